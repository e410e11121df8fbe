"""The cheapest `make chaos` scenario at tiny scale, as a regression test: a whole local stack
(broker, API, admission, 2 consumers, payment simulator, private Redis), a real rush, every app
PostgreSQL backend terminated three times, and the invariants from the database afterwards. It
found the asyncpg stuck-protocol 500s fixed in app/core/db.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.chaos import SCENARIOS, chaos_rush, run_scenario
from tests.fixtures.databases import create_database, drop_database

pytestmark = pytest.mark.slow

# 200 fans for 40 seats, short holds and admissions: sold out within a minute or two even on a
# loaded machine.
CFG = dataclasses.replace(chaos_rush(200, 40), opens_in_s=3.0, spike_mean_s=2.0)
FAST = {"TR_HOLD_TTL_S": "10", "TR_ADMISSION_TOKEN_TTL_S": "30"}


@pytest.fixture
def chaos_database() -> Iterator[str]:
    # Its own database: terminating the app's backends must not hit other tests' pools.
    url = create_database("tr_chaos")
    yield url
    drop_database(url)


async def test_a_rush_survives_postgres_backends_terminated(
    chaos_database: str, tmp_path: Path
) -> None:
    [scenario] = [s for s in SCENARIOS if s.name == "pg-terminate"]
    result = await run_scenario(
        scenario, cfg=CFG, run_dir=tmp_path, database_url=chaos_database, env=FAST
    )
    row = result.row
    assert row["faults"] >= 1, result.failures
    assert row["acked"] > 0, result.failures
    for key in ("lost", "duplicated", "oversold", "double_booked", "unanswered", "server_errors"):
        assert row[key] == 0, (key, result.failures)
    assert result.outcome is not None
    checks = result.outcome.checks
    assert checks["sold"] == checks["seats"], result.failures
    assert checks["kafka_request_ids"] == checks["db_outcomes"] >= checks["accepted_202"] > 0
    for key in ("phantom", "unrecorded", "kafka_unconsumed"):
        assert checks[key] == 0, (key, result.failures)
    assert result.extra["double_charged"] == 0
    assert result.extra["charged_no_ticket"] == 0
    assert result.passed, result.failures
