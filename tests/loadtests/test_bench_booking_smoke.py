"""Smoke test of `make bench-booking`: the --quick mode end to end against the test session's
live API (2 uvicorn workers, the session's PostgreSQL database, Redis prefix and broker), for two
strategies. The figures are not checked, only that the run completes, every correctness counter
is 0 and the report files are written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.core.config import Settings
from tests.conftest import ROOT, LiveServer

STRATEGIES = ("atomic", "inprocess")
SCENARIOS = {"hot_seat", "spread", "general_admission"}


def test_quick_benchmark_against_live_server(
    live_server: LiveServer, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "booking"
    env = os.environ | {
        "TR_DATABASE_URL": settings.database_url,
        "TR_REDIS_URL": settings.redis_url,
        "TR_REDIS_PREFIX": settings.redis_prefix,
        "TR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TR_JWT_SECRET": settings.jwt_secret.get_secret_value(),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.bench_booking",
            "--quick",
            "--strategies",
            ",".join(STRATEGIES),
            "--base-url",
            live_server.url,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in ("REPORT.md", "results.json", "throughput.png", "p99.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "results.json").read_text())
    runs = report["results"]
    assert {(r["strategy"], r["scenario"]) for r in runs} == {
        (s, sc) for s in STRATEGIES for sc in SCENARIOS
    }
    for r in runs:
        where = f"{r['strategy']}/{r['scenario']}"
        db = r["db"]
        assert db["oversold"] == 0, where
        assert db["double_booked"] == 0, where
        assert db["lost"] == 0, where
        assert db["inconsistent"] == 0, where
        assert db["phantom"] == 0, where
        assert r["unanswered"] == 0, where
        # Every 201 is a sale in the database; hot seats and the stock all found a buyer.
        assert db["sold"] == r["successes"], where
        if r["scenario"] != "spread":  # spread: random draws leave some seats unsold
            assert db["sold"] == db["available"], where
        assert r["requests"] == r["successes"] + r["conflicts"] + r["errors"], where
    assert report["references"]["noop"]["rps"] > 0
    assert "## Strategy A (`inprocess`) across 2 processes" in (out / "REPORT.md").read_text()
