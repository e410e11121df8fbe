"""Paying for a hold against the real payment simulator: tickets, declines, outages behind the
circuit breaker, retries that never charge twice, and refunds of late charges."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from tests.booking.conftest import hold, make_sale
from tests.fixtures.payments import Sim


@asynccontextmanager
async def own_app(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app with its own Redis prefix (so its own circuit breaker) and overrides."""
    custom = settings.model_copy(
        update={"redis_prefix": f"{settings.redis_prefix}-{uuid.uuid4().hex[:6]}"} | overrides
    )
    application: FastAPI = create_app(custom)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as c,
    ):
        yield c


async def _provider_key(settings: Settings, booking_id: int) -> str:
    conn = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        key: str = await conn.fetchval(
            "SELECT provider_key FROM payment WHERE booking_id = $1 ORDER BY id LIMIT 1", booking_id
        )
    finally:
        await conn.close()
    return key


async def test_pay_confirms_and_issues_tickets_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    sim: Sim,
) -> None:
    sale = await make_sale(client, admin_headers)
    fan = fan_tokens[20]
    held = await hold(client, sale, fan, {"seat_ids": sale.seat_ids[:2]})
    before = await sim.stats()
    results = await asyncio.gather(
        *(client.post(f"/bookings/{held['id']}/pay", headers=fan) for _ in range(5))
    )
    assert {r.status_code for r in results} <= {200, 409}
    confirmed = [r.json() for r in results if r.status_code == 200]
    assert confirmed and all(b["status"] == "confirmed" for b in confirmed)
    booking = (await client.get(f"/bookings/{held['id']}", headers=fan)).json()
    assert booking["status"] == "confirmed"
    assert sorted(t["seat_id"] for t in booking["tickets"]) == sorted(sale.seat_ids[:2])
    assert len({t["code"] for t in booking["tickets"]}) == 2
    after = await sim.stats()
    assert after["charges_created"] - before["charges_created"] == 1
    avail = (await client.get(f"/concerts/{sale.concert_id}/availability")).json()
    assert avail["sections"][0]["sold"] == 2
    again = await client.post(f"/bookings/{held['id']}/pay", headers=fan)
    assert again.status_code == 200 and again.json()["tickets"] == booking["tickets"]
    cancel = await client.delete(f"/bookings/{held['id']}", headers=fan)
    assert cancel.status_code == 409


async def test_general_admission_tickets(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    sim: Sim,
) -> None:
    sale = await make_sale(client, admin_headers)
    fan = fan_tokens[21]
    held = await hold(client, sale, fan, {"quantity": 3})
    assert held["amount_minor"] == 3 * 99_000
    paid = await client.post(f"/bookings/{held['id']}/pay", headers=fan)
    assert paid.status_code == 200
    assert len(paid.json()["tickets"]) == 3 and all(
        t["seat_id"] is None for t in paid.json()["tickets"]
    )


async def test_decline_keeps_the_hold_and_a_new_attempt_can_succeed(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    sim: Sim,
) -> None:
    sale = await make_sale(client, admin_headers)
    fan = fan_tokens[22]
    held = await hold(client, sale, fan, {"quantity": 1})
    await sim.control(decline_rate=1.0)
    declined = await client.post(f"/bookings/{held['id']}/pay", headers=fan)
    assert declined.status_code == 402 and declined.json()["type"].endswith("/payment-declined")
    assert (await client.get(f"/bookings/{held['id']}", headers=fan)).json()["status"] == "held"
    await sim.control(decline_rate=0.0)
    ok = await client.post(f"/bookings/{held['id']}/pay", headers=fan)
    assert ok.status_code == 200 and ok.json()["status"] == "confirmed"


@pytest.mark.parametrize(
    "knobs",
    [
        # The first attempt is slower than the client's timeout.
        {"latency_ms": 800, "first_attempt_only": True},
        # The provider records the charge, then the answer is lost (a 5xx after recording).
        {"failure_rate": 1.0, "failure_point": "after", "first_attempt_only": True},
    ],
    ids=["timeout", "lost-answer"],
)
async def test_retried_charge_never_charges_twice(
    knobs: dict[str, Any],
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    sim: Sim,
) -> None:
    sale = await make_sale(client, admin_headers)
    fan = fan_tokens[23]
    held = await hold(client, sale, fan, {"quantity": 1})
    await sim.control(**knobs)
    before = await sim.stats()
    async with own_app(settings, payments_timeout_s=0.3) as c:
        paid = await c.post(f"/bookings/{held['id']}/pay", headers=fan)
    assert paid.status_code == 200, paid.text
    after = await sim.stats()
    assert after["charges_created"] - before["charges_created"] == 1
    if "failure_point" in knobs:
        assert after["replays"] - before["replays"] >= 1


async def test_outage_opens_breaker_fails_fast_and_keeps_holds(
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    sim: Sim,
) -> None:
    sale = await make_sale(client, admin_headers)
    fans = fan_tokens[24:30]
    holds = [await hold(client, sale, f, {"quantity": 1}) for f in fans]
    await sim.control(outage=True)
    async with own_app(
        settings, breaker_failure_threshold=3, breaker_recovery_s=1.0, payments_retries=0
    ) as c:
        for held, fan in zip(holds[:5], fans[:5], strict=True):
            r = await c.post(f"/bookings/{held['id']}/pay", headers=fan)
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        stats = await sim.stats()
        fast = await c.post(f"/bookings/{holds[4]['id']}/pay", headers=fans[4])
        assert fast.status_code == 503
        assert (await sim.stats())["failures_injected"] == stats[
            "failures_injected"
        ]  # never reached it
        metrics = (await c.get("/metrics")).text
        assert 'tr_circuit_breaker_transitions_total{breaker="payments",to="open"}' in metrics
        for held, fan in zip(holds[:5], fans[:5], strict=True):
            assert (await c.get(f"/bookings/{held['id']}", headers=fan)).json()["status"] == "held"
        await sim.control(outage=False)
        await asyncio.sleep(1.1)
        recovered = await c.post(f"/bookings/{holds[5]['id']}/pay", headers=fans[5])
        assert recovered.status_code == 200, recovered.text
        retry = await c.post(f"/bookings/{holds[0]['id']}/pay", headers=fans[0])
        assert retry.status_code == 200


async def test_pay_after_expiry_is_refused(
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    sim: Sim,
) -> None:
    sale = await make_sale(client, admin_headers)
    fan = fan_tokens[31]
    async with own_app(settings, hold_ttl_s=1, sweeper_interval_s=3600) as c:
        held = await hold(c, sale, fan, {"quantity": 1})
        await asyncio.sleep(1.2)
        before = await sim.stats()
        r = await c.post(f"/bookings/{held['id']}/pay", headers=fan)
        assert r.status_code == 409 and r.json()["type"].endswith("/hold-expired")
        assert (await sim.stats())["charges_created"] == before["charges_created"]


async def test_a_charge_left_pending_on_an_expired_hold_is_refunded(
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    sim: Sim,
) -> None:
    sale = await make_sale(client, admin_headers)
    fan = fan_tokens[32]
    async with own_app(
        settings, hold_ttl_s=1, payment_grace_s=0, payments_retries=0, sweeper_interval_s=0.2
    ) as c:
        held = await hold(c, sale, fan, {"quantity": 1})
        # The provider records the charge and the answer is lost; the fan never asks again.
        await sim.control(failure_rate=1.0, failure_point="after")
        r = await c.post(f"/bookings/{held['id']}/pay", headers=fan)
        assert r.status_code == 503, r.text
        key = await _provider_key(settings, held["id"])
        charge = (await sim.charge(key)).json()
        assert charge["status"] == "succeeded"
        await sim.control(failure_rate=0.0)
        for _ in range(100):
            charge = (await sim.charge(key)).json()
            if charge["status"] == "refunded":
                break
            await asyncio.sleep(0.1)
        assert charge["status"] == "refunded"
        booking = (await c.get(f"/bookings/{held['id']}", headers=fan)).json()
        assert booking["status"] == "expired"
