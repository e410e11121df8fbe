"""The kind path cannot run here (no Docker daemon, kind or Pulumi CLI): it must say so at once
and leave nothing behind; its cluster config must match the kind stack."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.core.config import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "infra" / "kind" / "kind.sh"
BASICS = ("dirname", "grep", "sh", "mkdir", "cat")


def run(command: str, path: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(SCRIPT), command],
        env={"PATH": path, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def fake_tools(tmp_path: Path, **scripts: str) -> str:
    """A PATH of only the basic utilities and the given stand-ins: a real kind, docker or
    Pulumi on this machine is never reached."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in BASICS:
        (bin_dir / name).symlink_to(shutil.which(name) or f"/usr/bin/{name}")
    for name, body in scripts.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize("command", ["up", "deploy", "loadtest", "down"])
def test_missing_tools_fail_early_with_a_clear_message(command: str, tmp_path: Path) -> None:
    before = (
        set((PROJECT_ROOT / ".run").glob("kind*")) if (PROJECT_ROOT / ".run").exists() else set()
    )
    result = run(command, fake_tools(tmp_path), tmp_path)
    assert result.returncode == 2, result.stderr
    assert "kind path: kind is not installed" in result.stderr
    assert "not available on the Ticket-Rush development machines" in result.stderr
    after = (
        set((PROJECT_ROOT / ".run").glob("kind*")) if (PROJECT_ROOT / ".run").exists() else set()
    )
    assert after == before, "nothing is created before the tools are checked"


def test_a_docker_client_without_daemon_is_reported(tmp_path: Path) -> None:
    path = fake_tools(tmp_path, docker="exit 1", kind="exit 0", kubectl="exit 0")
    result = run("up", path, tmp_path)
    assert result.returncode == 2
    assert "the Docker daemon is not reachable" in result.stderr
    assert "is not installed" not in result.stderr


def test_with_every_tool_present_it_goes_on(tmp_path: Path) -> None:
    # Stand-ins that succeed: `up` must get past the checks and call kind to create the cluster.
    log = tmp_path / "calls.log"
    record = f'echo "$0 $*" >> {log}'
    path = fake_tools(tmp_path, docker=record, kind=record, kubectl=record)
    result = run("up", path, tmp_path)
    assert result.returncode == 0, result.stderr
    calls = log.read_text()
    assert "kind create cluster --name ticket-rush --config" in calls
    assert "kubectl cluster-info --context kind-ticket-rush" in calls


def test_unknown_command_prints_usage(tmp_path: Path) -> None:
    result = run("bogus", fake_tools(tmp_path), tmp_path)
    assert result.returncode == 64 and "usage:" in result.stderr


def test_kind_cluster_publishes_the_api_node_port() -> None:
    cluster = yaml.safe_load((PROJECT_ROOT / "infra" / "kind" / "cluster.yaml").read_text())
    stack = yaml.safe_load((PROJECT_ROOT / "infra" / "Pulumi.kind.yaml").read_text())["config"]
    mappings = [m for n in cluster["nodes"] for m in n.get("extraPortMappings", [])]
    assert {
        "containerPort": stack["ticket-rush:apiNodePort"],
        "hostPort": 30080,
    }.items() <= mappings[0].items()
    assert cluster["name"] == "ticket-rush"
    assert sum(n["role"] == "worker" for n in cluster["nodes"]) >= 2
    assert os.access(SCRIPT, os.X_OK)
