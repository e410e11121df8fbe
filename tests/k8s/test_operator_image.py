"""operator/Containerfile: multi-stage, slim, non-root, no build tools or HEALTHCHECK in the
final stage, the contract's command; and the operator really runs with only its own
dependencies plus the app package (installed there with --no-deps)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

from dockerfile_parse import DockerfileParser

from tests.conftest import ROOT

CONTAINERFILE = ROOT / "operator" / "Containerfile"


def final_stage() -> list[dict[str, str]]:
    parsed = DockerfileParser(fileobj=CONTAINERFILE.open("rb"))
    stages: list[list[dict[str, str]]] = []
    for instruction in parsed.structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages and instruction["instruction"] != "COMMENT":
            stages[-1].append(instruction)
    assert len(stages) >= 2, "multi-stage"
    assert all("slim" in image for image in parsed.parent_images)
    return stages[-1]


def test_final_stage_is_slim_non_root_without_build_tools_or_healthcheck() -> None:
    stage = final_stage()
    kinds = [i["instruction"] for i in stage]
    assert "HEALTHCHECK" not in kinds
    user = [i["value"] for i in stage if i["instruction"] == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    runs = " ".join(i["value"] for i in stage if i["instruction"] == "RUN")
    for tool in ("apt-get install", "gcc", "build-essential", "pip install"):
        assert tool not in runs
    copies = [i["value"] for i in stage if i["instruction"] == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies)  # built elsewhere


def test_command_is_the_contracts_kopf_run() -> None:
    cmd = json.loads(next(i["value"] for i in final_stage() if i["instruction"] == "CMD"))
    line = cmd[-1]
    for part in (
        "kopf run",
        "--standalone",
        "--namespace=",
        "POD_NAMESPACE",
        "--liveness=http://0.0.0.0:8080/healthz",
        "-m ticket_rush_operator.handlers",
    ):
        assert part in line
    assert "--all-namespaces" not in line


def test_build_stage_copies_existing_paths() -> None:
    parsed = DockerfileParser(fileobj=CONTAINERFILE.open("rb"))
    for instruction in parsed.structure:
        if instruction["instruction"] == "COPY" and not instruction["value"].startswith("--"):
            *sources, _ = instruction["value"].split()
            for source in sources:
                assert (ROOT / source).exists(), source


def test_the_operator_needs_none_of_the_apps_server_dependencies() -> None:
    """What `pip install --no-deps .` in the image relies on."""
    probe = (
        "import sys, ticket_rush_operator.handlers;"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    server_only = {"fastapi", "sqlalchemy", "asyncpg", "uvicorn", "alembic", "jwt", "pwdlib"}
    assert not server_only & set(out)
    declared = tomllib.loads((ROOT / "operator" / "pyproject.toml").read_text())
    names = {
        d.split(">")[0].split("[")[0].replace("-", "_") for d in declared["project"]["dependencies"]
    }
    used = {"kopf", "aiohttp", "aiokafka", "redis", "pydantic", "pydantic_settings"}
    assert used <= set(out) and used <= names
