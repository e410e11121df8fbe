"""Organizer endpoints: creating, opening, closing and throttling sales; every refusal is an RFC
9457 problem and changes nothing. Plus the `ticket-rush sale` CLI as an operator runs it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from tests.booking.conftest import make_sale
from tests.conftest import ROOT
from tests.queue.conftest import new_sale, process_env

PROBLEM = "application/problem+json"


def _window(opens_in: float = 60, closes_in: float = 3600) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "opens_at": (now + timedelta(seconds=opens_in)).isoformat(),
        "closes_at": (now + timedelta(seconds=closes_in)).isoformat(),
    }


async def _sale_count(app: Any, concert_id: int) -> int:
    async with app.state.tr.sessionmaker() as session:
        return int(
            await session.scalar(
                text("SELECT count(*) FROM sale WHERE concert_id = :c"), {"c": concert_id}
            )
        )


async def test_create_and_read(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    concert = (await make_sale(client, admin_headers)).concert_id
    body = {"concert_id": concert, "max_active": 300, "initial_rate": 20, "min_rate": 2}
    r = await client.post("/sales", json=body | _window(), headers=admin_headers)
    assert r.status_code == 201, r.text
    sale = r.json()
    assert r.headers["location"] == f"/sales/{sale['id']}"
    assert sale["status"] == "scheduled" and sale["close_reason"] is None
    assert (sale["max_active"], sale["initial_rate"], sale["min_rate"], sale["max_rate"]) == (
        300,
        20,
        2,
        500,
    )
    assert (await client.get(f"/sales/{sale['id']}")).json() == sale
    stats = (await client.get(f"/sales/{sale['id']}/stats", headers=admin_headers)).json()
    assert stats["status"] == "scheduled" and stats["current_rate"] == 20
    assert stats["rate_mode"] == "auto" and stats["queue_length"] == 0


@pytest.mark.parametrize(
    ("change", "status", "fragment"),
    [
        ({"opens_in": 100, "closes_in": 50}, 422, "opens_at must be before closes_at"),
        ({"opens_in": -100, "closes_in": -50}, 422, "closes_at must be in the future"),
        ({"min_rate": 50, "initial_rate": 10}, 422, "min_rate <= initial_rate"),
        ({"max_rate": 0}, 422, "greater than 0"),
        ({"max_active": 0}, 422, "greater than or equal to 1"),
        ({"opens_at": "1700000000"}, 422, "ISO 8601"),
        ({"concert_id": 2**62}, 404, "No concert"),
        ({"surprise": 1}, 422, "Extra inputs"),
    ],
)
async def test_create_refusals_change_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app: Any,
    change: dict[str, Any],
    status: int,
    fragment: str,
) -> None:
    concert = (await make_sale(client, admin_headers)).concert_id
    window = _window(change.pop("opens_in", 60), change.pop("closes_in", 3600))
    r = await client.post(
        "/sales", json={"concert_id": concert} | window | change, headers=admin_headers
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert fragment in r.text
    assert await _sale_count(app, concert) == 0


async def test_auth_and_one_live_sale_per_concert(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_headers: dict[str, str],
    app: Any,
) -> None:
    concert = (await make_sale(client, admin_headers)).concert_id
    body = {"concert_id": concert} | _window()
    assert (await client.post("/sales", json=body)).status_code == 401
    assert (await client.post("/sales", json=body, headers=fan_headers)).status_code == 403
    first = await client.post("/sales", json=body, headers=admin_headers)
    assert first.status_code == 201
    sale_id = first.json()["id"]
    second = await client.post("/sales", json=body, headers=admin_headers)
    assert second.status_code == 409 and second.headers["content-type"] == PROBLEM
    assert second.json()["type"].endswith("/sale-exists")
    assert second.json()["sale_id"] == sale_id
    for path in (f"/sales/{sale_id}:open", f"/sales/{sale_id}:close"):
        assert (await client.post(path, headers=fan_headers)).status_code == 403
    r = await client.put(f"/sales/{sale_id}/rate", json={"rate": 1}, headers=fan_headers)
    assert r.status_code == 403
    assert (await client.get(f"/sales/{sale_id}/stats", headers=fan_headers)).status_code == 403
    # Once closed, the concert may get a new sale.
    assert (await client.post(f"/sales/{sale_id}:close", headers=admin_headers)).status_code == 200
    assert (await client.post("/sales", json=body, headers=admin_headers)).status_code == 201
    assert await _sale_count(app, concert) == 2


async def test_open_close_and_rate_transitions(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    sale = await new_sale(client, admin_headers, opens_in=600)
    sid = sale["id"]
    r = await client.put(f"/sales/{sid}/rate", json={"rate": 1000}, headers=admin_headers)
    assert r.status_code == 422 and r.json()["type"].endswith("/rate-out-of-bounds")
    r = await client.put(
        f"/sales/{sid}/rate", json={"rate": 1, "mode": "auto"}, headers=admin_headers
    )
    assert r.status_code == 422  # below min_rate: auto mode must stay inside the bounds
    stats = (await client.get(f"/sales/{sid}/stats", headers=admin_headers)).json()
    assert (stats["current_rate"], stats["rate_mode"]) == (50, "auto")  # unchanged
    r = await client.put(f"/sales/{sid}/rate", json={"rate": 0}, headers=admin_headers)
    assert r.status_code == 200 and r.json() == {"sale_id": sid, "rate": 0, "mode": "manual"}
    stats = (await client.get(f"/sales/{sid}/stats", headers=admin_headers)).json()
    assert (stats["current_rate"], stats["rate_mode"]) == (0, "manual")

    opened = await client.post(f"/sales/{sid}:open", headers=admin_headers)
    assert opened.status_code == 200
    assert opened.json()["status"] == "open" and opened.json()["opened_at"]
    concert = (await client.get(f"/concerts/{sale['concert_id']}")).json()
    assert concert["status"] == "on_sale"
    again = await client.post(f"/sales/{sid}:open", headers=admin_headers)
    assert again.status_code == 409 and again.json()["sale_status"] == "open"
    closed = await client.post(f"/sales/{sid}:close", headers=admin_headers)
    assert closed.json()["status"] == "closed" and closed.json()["close_reason"] == "manual"
    for path in (f"/sales/{sid}:close", f"/sales/{sid}:open"):
        r = await client.post(path, headers=admin_headers)
        assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    r = await client.put(f"/sales/{sid}/rate", json={"rate": 10}, headers=admin_headers)
    assert r.status_code == 409
    for method, path in (
        ("GET", "/sales/999999999"),
        ("POST", "/sales/999999999:open"),
        ("GET", "/sales/999999999/stats"),
        ("GET", "/sales/999999999/queue/me"),
    ):
        r = await client.request(method, path, headers=admin_headers)
        assert r.status_code == 404 and r.json()["type"].endswith("/sale-not-found"), path


async def test_draft_concert_goes_on_sale_when_the_sale_opens(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    from tests.catalog.test_catalog import make_concert

    concert = await make_concert(client, admin_headers)
    assert concert["status"] == "draft"
    sale = await new_sale(client, admin_headers, concert_id=concert["id"])
    await client.post(f"/sales/{sale['id']}:open", headers=admin_headers)
    assert (await client.get(f"/concerts/{concert['id']}")).json()["status"] == "on_sale"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "sale", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


async def test_cli(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    concert = (await make_sale(client, admin_headers)).concert_id
    env = process_env(settings, TR_RUN_DIR=str(tmp_path))  # no local stack.env to pick up
    created = _cli(env, "create", str(concert), "--opens-at", "+10m", "--closes-at", "+1h")
    assert created.returncode == 0, created.stderr + created.stdout
    sale_id = int(created.stdout.split()[1].rstrip(":"))
    rate = _cli(env, "set-rate", str(sale_id), "12.5")
    assert rate.returncode == 0 and "12.5 fans/s (manual)" in rate.stdout, rate.stderr
    shown = _cli(env, "show", str(sale_id))
    assert shown.returncode == 0 and "current_rate" in shown.stdout and "12.5" in shown.stdout
    stats = (await client.get(f"/sales/{sale_id}/stats", headers=admin_headers)).json()
    assert stats["current_rate"] == 12.5 and stats["rate_mode"] == "manual"
    missing = _cli(env, "open", "999999999")
    assert missing.returncode == 1 and "No sale" in missing.stdout
