"""The cluster load test's locustfile, run for real against the local processes: the real API
(2 uvicorn workers), the admission worker and the payment simulator. A few fans must each end
with a ticket, through the same calls `make kind-loadtest` makes against a cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.booking.conftest import make_sale
from tests.conftest import ROOT, LiveServer
from tests.queue.conftest import (  # noqa: F401 - fixtures used by name
    WorkerProcess,
    admission_workers,
    new_sale,
    queue_api,
)

FANS = 6


@pytest.mark.parametrize("strategy", ["", "redis_claim"], ids=["server-default", "kafka-pipeline"])
async def test_rush_locustfile_buys_tickets(
    strategy: str,
    queue_api: LiveServer,  # noqa: F811
    admission_workers: Callable[..., WorkerProcess],  # noqa: F811
    booking_consumer: object,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    stock = await make_sale(client, admin_headers, rows=2, per_row=10)
    sale = await new_sale(
        client,
        admin_headers,
        concert_id=stock.concert_id,
        opens_in=1,
        initial_rate=100,
        max_rate=200,
    )
    admission_workers()
    env = os.environ | {
        "LOADTEST_SALE_ID": str(sale["id"]),
        "LOADTEST_MAX_WAIT_S": "40",
        "LOADTEST_STRATEGY": strategy,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            "loadtests/locustfile_rush.py",
            "--headless",
            "-u",
            str(FANS),
            "-r",
            str(FANS),
            "-t",
            "90s",
            "--host",
            queue_api.url,
            # Written from the final stats at exit (the CSV lags by up to a second).
            "--json-file",
            str(tmp_path / "rush"),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    output = result.stdout + result.stderr
    outcomes = re.search(r"rush outcomes: (\{.*\})", output)
    assert outcomes, output[-3000:]
    assert outcomes.group(1) == f"{{'ticket': {FANS}}}", output[-3000:]
    entries = json.loads((tmp_path / "rush.json").read_text())
    requests = {e["name"]: e["num_requests"] for e in entries}
    assert sum(e["num_failures"] for e in entries) == 0, entries
    for name in ("/sales/[id]/queue", "/concerts/[id]/bookings", "/bookings/[id]/pay"):
        assert requests[name] >= FANS, (name, requests)
    if strategy == "redis_claim":  # accepted (202), then the outcome polled
        assert requests["/bookings/requests/[id]"] >= FANS, requests
    mine = await client.get(f"/sales/{sale['id']}/stats", headers=admin_headers)
    assert mine.json()["completed"] == FANS
