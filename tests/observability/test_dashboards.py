"""The committed dashboards are what dashboards/build.py generates, and are well-formed for
Grafana and for infra/ (which ships them as ConfigMaps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dashboards.build import BOARDS, expand, file_name, panel_queries, render

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))  # the Pulumi program's `components` (as tests/k8s do)

from components.monitoring import dashboard_files  # noqa: E402

DASHBOARDS = ROOT / "dashboards"


def test_committed_json_is_the_generated_output(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dashboards.build", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    generated = sorted(p.name for p in tmp_path.glob("*.json"))
    assert generated == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for name in generated:
        assert (tmp_path / name).read_text() == (DASHBOARDS / name).read_text(), (
            f"dashboards/{name} is stale: run `python -m dashboards.build`"
        )


def test_the_four_boards_are_loaded_by_infra() -> None:
    assert (
        {p.name for p in dashboard_files(DASHBOARDS)}
        == {file_name(b) for b in BOARDS}
        == {
            "sale-overview.json",
            "booking.json",
            "kafka-pipeline.json",
            "platform-health.json",
        }
    )


def test_every_panel_has_a_unique_id_a_place_and_queries() -> None:
    for board in BOARDS:
        dashboard = json.loads(render(board))
        assert dashboard["uid"] == board.uid
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel in dashboard["panels"]:
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        for _, expr in panel_queries(dashboard):
            used = {word for word in expr.split("$")[1:]}
            assert all(w.startswith(("__rate_interval", "__range", "sale", "job")) for w in used)
            assert "$" not in expand(expr)
            if "$sale" in expr:
                assert "sale" in variables
