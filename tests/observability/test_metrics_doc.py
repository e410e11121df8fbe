"""docs/metrics.md lists exactly the metric families the processes export, with their types;
dashboards use only those; and the API's multiprocess view forgets workers that died."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import app.admission
import app.booking.consumer
import app.booking_consumer
import app.main
import app.payments_sim
import app.queue.worker  # noqa: F401 - every process's modules, so every family is registered
from app.core.metrics import render_metrics
from dashboards.build import BOARDS, file_name, panel_queries

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(tr_\w+)` \| (\w+) \|", re.MULTILINE)
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def documented() -> dict[str, str]:
    return dict(ROW.findall((ROOT / "docs/metrics.md").read_text()))


def exported() -> dict[str, str]:
    families = {}
    for family in REGISTRY.collect():
        if family.name.startswith("tr_"):
            name = family.name + "_total" if family.type == "counter" else family.name
            families[name] = family.type
    return families


def test_the_catalogue_matches_the_code() -> None:
    assert documented() == exported()


def test_dashboards_use_only_exported_metrics() -> None:
    families = {name.removesuffix("_total") for name in exported()}
    used = set()
    for board in BOARDS:
        dashboard = json.loads((ROOT / "dashboards" / file_name(board)).read_text())
        for _, expr in panel_queries(dashboard):
            used |= set(re.findall(r"\btr_\w+", expr))
    unknown = set()
    for name in used:
        base = name
        for suffix in SUFFIXES:
            base = base.removesuffix(suffix)
        if base not in families:
            unknown.add(name)
    assert used and unknown == set()


_CHILD = """
import sys, time
from app.core.metrics import DB_POOL_IN_USE, HTTP_REQUESTS
DB_POOL_IN_USE.inc(3)
HTTP_REQUESTS.labels("/probe", "GET", "200").inc(5)
print("ready", flush=True)
time.sleep(60)
"""


def _scrape() -> dict[str, float]:
    body, _ = render_metrics()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name in ("tr_db_pool_connections_in_use", "tr_http_requests_total")
    }


def test_multiprocess_view_sums_workers_and_forgets_dead_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        assert _scrape() == {"tr_db_pool_connections_in_use": 6, "tr_http_requests_total": 10}
        workers[0].kill()
        workers[0].wait(10)
        # The dead worker's requests still count; its connections are no longer in use.
        assert _scrape() == {"tr_db_pool_connections_in_use": 3, "tr_http_requests_total": 10}
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(10)
