"""Booking lifecycle: idempotency, limits, expiry (lazy and sweeper), cancel, fencing."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.booking import service
from app.booking.errors import LockLost
from app.booking.strategies.base import HoldRequest
from app.booking.strategies.redis_lock import RedisLockStrategy
from app.core.config import Settings
from app.core.state import AppState
from app.main import create_app
from tests.booking.conftest import make_sale

PROBLEM = "application/problem+json"


async def test_idempotent_booking_returns_first_result(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fan_tokens: list[dict[str, str]]
) -> None:
    sale = await make_sale(client, admin_headers)
    fan = fan_tokens[0] | {"Idempotency-Key": "order-0001-retry"}
    url = f"/concerts/{sale.concert_id}/bookings"
    results = await asyncio.gather(
        *(client.post(url, json={"seat_ids": sale.seat_ids[:2]}, headers=fan) for _ in range(10))
    )
    assert sorted(r.status_code for r in results).count(201) == 1
    assert {r.status_code for r in results} <= {200, 201}
    assert len({r.json()["id"] for r in results}) == 1
    other = await client.post(url, json={"seat_ids": sale.seat_ids[2:3]}, headers=fan)
    assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-key-reused")
    mine = await client.get("/users/me/bookings", headers=fan_tokens[0])
    assert [b["id"] for b in mine.json()["items"] if b["concert_id"] == sale.concert_id] == [
        results[0].json()["id"]
    ]


async def test_ticket_limit_per_fan(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fan_tokens: list[dict[str, str]]
) -> None:
    sale = await make_sale(client, admin_headers, max_per_user=3)
    url = f"/concerts/{sale.concert_id}/bookings"
    fan = fan_tokens[1]
    # Concurrent requests from one fan cannot sneak past the limit.
    results = await asyncio.gather(
        *(client.post(url, json={"quantity": 2}, headers=fan) for _ in range(5))
    )
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409, 409]
    assert {r.json()["type"].rsplit("/", 1)[1] for r in results if r.status_code == 409} == {
        "ticket-limit-exceeded"
    }
    ga = (await client.get(f"/concerts/{sale.concert_id}/general-admission")).json()
    assert ga["stock"] == sale.stock - 2


async def test_bad_requests_change_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fan_tokens: list[dict[str, str]]
) -> None:
    sale = await make_sale(client, admin_headers)
    other = await make_sale(client, admin_headers)
    url = f"/concerts/{sale.concert_id}/bookings"
    fan = fan_tokens[2]
    cases = [
        ({"seat_ids": [sale.seat_ids[0], other.seat_ids[0]]}, 422, "invalid-seats"),
        ({"seat_ids": [sale.seat_ids[0]], "quantity": 1}, 422, "validation-error"),
        ({"seat_ids": [sale.seat_ids[0], sale.seat_ids[0]]}, 422, "validation-error"),
        ({"quantity": 1, "strategy": "nope"}, 422, "validation-error"),
        ({"quantity": 0}, 422, "validation-error"),
    ]
    for body, code, slug in cases:
        r = await client.post(url, json=body, headers=fan)
        assert r.status_code == code, (body, r.text)
        assert r.headers["content-type"] == PROBLEM and r.json()["type"].endswith("/" + slug)
    assert (await client.post(url, json={"quantity": 1})).status_code == 401
    draft = await client.post("/concerts/999999/bookings", json={"quantity": 1}, headers=fan)
    assert draft.status_code == 404
    avail = (await client.get(f"/concerts/{sale.concert_id}/availability")).json()
    assert avail["available"] == 50
    assert (await client.get(f"/concerts/{sale.concert_id}/general-admission")).json()[
        "stock"
    ] == sale.stock


async def test_other_fans_cannot_see_or_cancel(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fan_tokens: list[dict[str, str]]
) -> None:
    sale = await make_sale(client, admin_headers)
    r = await client.post(
        f"/concerts/{sale.concert_id}/bookings", json={"quantity": 1}, headers=fan_tokens[3]
    )
    booking = r.json()
    for method in ("GET", "DELETE"):
        intruder = await client.request(method, f"/bookings/{booking['id']}", headers=fan_tokens[4])
        assert intruder.status_code == 404
    pay = await client.post(f"/bookings/{booking['id']}/pay", headers=fan_tokens[4])
    assert pay.status_code == 404
    assert (await client.get(f"/bookings/{booking['id']}", headers=fan_tokens[3])).json()[
        "status"
    ] == "held"
    assert (
        await client.get(f"/bookings/{booking['id']}", headers=admin_headers)
    ).status_code == 200


async def test_cancel_returns_seats_at_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fan_tokens: list[dict[str, str]]
) -> None:
    sale = await make_sale(client, admin_headers)
    url = f"/concerts/{sale.concert_id}/bookings"
    first = await client.post(url, json={"seat_ids": sale.seat_ids[:1]}, headers=fan_tokens[5])
    taken = await client.post(url, json={"seat_ids": sale.seat_ids[:1]}, headers=fan_tokens[6])
    assert taken.status_code == 409 and taken.json()["type"].endswith("/seat-taken")
    cancel = await client.delete(f"/bookings/{first.json()['id']}", headers=fan_tokens[5])
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    again = await client.post(url, json={"seat_ids": sale.seat_ids[:1]}, headers=fan_tokens[6])
    assert again.status_code == 201
    avail = (await client.get(f"/concerts/{sale.concert_id}/availability")).json()
    assert avail["available"] == 49 and avail["sections"][0]["held"] == 1


async def test_holds_expire_lazily_and_by_sweeper(
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
) -> None:
    sale = await make_sale(client, admin_headers)
    short = settings.model_copy(update={"hold_ttl_s": 1, "sweeper_interval_s": 0.2})
    application = create_app(short)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            url = f"/concerts/{sale.concert_id}/bookings"
            seat = await c.post(url, json={"seat_ids": sale.seat_ids[:2]}, headers=fan_tokens[7])
            ga = await c.post(url, json={"quantity": 2}, headers=fan_tokens[7])
            assert seat.status_code == ga.status_code == 201
            await asyncio.sleep(1.8)
            # The sweeper released both holds: seats, stock and the fan's quota are back.
            assert (await c.get(f"/bookings/{seat.json()['id']}", headers=fan_tokens[7])).json()[
                "status"
            ] == "expired"
            assert (await c.get(f"/bookings/{ga.json()['id']}", headers=fan_tokens[7])).json()[
                "status"
            ] == "expired"
            assert (await c.get(f"/concerts/{sale.concert_id}/general-admission")).json()[
                "stock"
            ] == sale.stock
            retake = await c.post(
                url, json={"seat_ids": sale.seat_ids[:2], "quantity": None}, headers=fan_tokens[8]
            )
            assert retake.status_code == 201
            again = await c.post(url, json={"quantity": 4}, headers=fan_tokens[7])
            assert again.status_code == 201  # quota was returned too


async def test_lazy_expiry_on_claim(
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
) -> None:
    sale = await make_sale(client, admin_headers)
    # A sweeper that never runs in this test: only the lazy path can free the seat.
    short = settings.model_copy(update={"hold_ttl_s": 1, "sweeper_interval_s": 3600})
    application = create_app(short)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            await asyncio.sleep(0.1)  # let the sweeper's first pass run before the hold exists
            url = f"/concerts/{sale.concert_id}/bookings"
            first = await c.post(url, json={"seat_ids": sale.seat_ids[-1:]}, headers=fan_tokens[9])
            assert first.status_code == 201
            await asyncio.sleep(1.2)
            second = await c.post(
                url, json={"seat_ids": sale.seat_ids[-1:]}, headers=fan_tokens[10]
            )
            assert second.status_code == 201, second.text
            r = await c.get(f"/bookings/{first.json()['id']}", headers=fan_tokens[9])
            assert r.json()["status"] == "expired"


class _StallingRedisLock(RedisLockStrategy):
    """Stalls after getting its lock (think GC pause) until `resume` is set."""

    def __init__(self, stall: asyncio.Event, resume: asyncio.Event) -> None:
        self.stall, self.resume = stall, resume

    async def prepare(self, session: AsyncSession, state: AppState) -> None:
        self.stall.set()
        await self.resume.wait()


async def test_fencing_rejects_a_stale_lock_holder(
    app: Any, settings: Settings, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """Holder 1 stalls past its lease; holder 2 takes the lock, books and cancels, so the seat is
    available again. Holder 1 wakes up: only the fencing token stops its write."""
    sale = await make_sale(client, admin_headers)
    state: AppState = app.state.tr
    short = dataclasses.replace(
        state, settings=settings.model_copy(update={"redis_lock_ttl_ms": 200})
    )
    async with state.sessionmaker() as session:
        u1, u2 = (await session.scalars(text("SELECT id FROM app_user ORDER BY id LIMIT 2"))).all()

    def req(user: int) -> HoldRequest:
        return HoldRequest(
            user_id=user,
            concert_id=sale.concert_id,
            seat_ids=(sale.seat_ids[0],),
            quantity=1,
            max_per_user=4,
            idempotency_key=None,
            request_hash=None,
        )

    stall, resume = asyncio.Event(), asyncio.Event()
    stale = asyncio.create_task(_StallingRedisLock(stall, resume).hold(short, req(u1)))
    await stall.wait()
    await asyncio.sleep(0.4)  # the first holder's 200 ms lease has expired
    winner = await RedisLockStrategy().hold(short, req(u2))
    await service.cancel(short, booking_id=winner.id, user_id=u2, admin=False)
    resume.set()
    with pytest.raises(LockLost):
        await stale
    async with state.sessionmaker() as session:
        active = (
            await session.execute(
                text("SELECT count(*) FROM booking_seat WHERE seat_id = :s AND active"),
                {"s": sale.seat_ids[0]},
            )
        ).scalar_one()
        status = (
            await session.execute(
                text("SELECT status FROM seat WHERE id = :s"), {"s": sale.seat_ids[0]}
            )
        ).scalar_one()
    assert (active, status) == (0, "available")
