"""Every strategy under real concurrency: 200 clients, 2 API processes (and 1 for `inprocess`),
50 seats contested 4 ways and general-admission stock 100. Exactly the stock is sold, nothing
twice, every client gets 201 or 409. Strategy redis_claim answers 202 instead of 201 (accepted,
written by the booking consumer); every accepted request must then end held."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.booking.conftest import Sale, make_sale
from tests.conftest import LiveServer

STRATEGIES = ["inprocess", "pessimistic", "optimistic", "redis_lock", "atomic", "redis_claim"]
CLIENTS = 200
ASYNC = "redis_claim"


async def _race(
    client: httpx.AsyncClient, fans: list[dict[str, str]], url: str, bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    return await asyncio.gather(
        *(client.post(url, json=body, headers=fan) for fan, body in zip(fans, bodies, strict=True))
    )


async def _decided(
    client: httpx.AsyncClient, accepted: httpx.Response, fan: dict[str, str]
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        r = await client.get(accepted.headers["Location"], headers=fan)
        assert r.status_code == 200, r.text
        if r.json()["status"] != "pending":
            return dict(r.json())
        assert time.monotonic() < deadline, "the booking consumer did not decide in time"
        await asyncio.sleep(0.1)


async def _bookings(
    client: httpx.AsyncClient, fans: list[dict[str, str]], responses: list[httpx.Response]
) -> list[dict[str, Any]]:
    """The winners' bookings: the 201 bodies or, for 202, what the consumer wrote (every
    accepted request must be held: the Redis claim already decided the race)."""

    async def one(fan: dict[str, str], r: httpx.Response) -> dict[str, Any] | None:
        if r.status_code == 201:
            return dict(r.json())
        if r.status_code != 202:
            return None
        outcome = await _decided(client, r, fan)
        assert outcome["status"] == "held", outcome
        booking = await client.get(f"/bookings/{outcome['booking_id']}", headers=fan)
        return dict(booking.json())

    found = await asyncio.gather(*(one(f, r) for f, r in zip(fans, responses, strict=True)))
    return [b for b in found if b is not None]


async def _db(app: Any, sql: str, **params: Any) -> Any:
    async with app.state.tr.sessionmaker() as session:
        return (await session.execute(text(sql), params)).all()


async def _check_seats(
    app: Any,
    sale: Sale,
    responses: list[httpx.Response],
    bookings: list[dict[str, Any]],
    won_status: int,
) -> Counter[str]:
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {won_status, 409}, [
        r.text for r in responses if r.status_code not in (won_status, 409)
    ][:3]
    assert codes[won_status] == len(bookings) == len(sale.seat_ids) == 50
    won = [b["seat_ids"][0] for b in bookings]
    assert sorted(won) == sorted(sale.seat_ids)
    [(active, distinct)] = await _db(
        app,
        "SELECT count(*), count(DISTINCT bs.seat_id) FROM booking_seat bs"
        " JOIN booking b ON b.id = bs.booking_id WHERE b.concert_id = :c AND bs.active",
        c=sale.concert_id,
    )
    assert active == distinct == 50
    [(held,)] = await _db(
        app,
        "SELECT count(*) FROM seat WHERE concert_id = :c AND status = 'held'",
        c=sale.concert_id,
    )
    assert held == 50
    return Counter(r.json()["type"].rsplit("/", 1)[1] for r in responses if r.status_code == 409)


async def _check_stock(
    app: Any,
    sale: Sale,
    responses: list[httpx.Response],
    bookings: list[dict[str, Any]],
    won_status: int,
) -> None:
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {won_status, 409}, [
        r.text for r in responses if r.status_code not in (won_status, 409)
    ][:3]
    assert codes[won_status] == len(bookings) == sale.stock
    [(stock, sold)] = await _db(
        app,
        "SELECT g.stock, (SELECT coalesce(sum(quantity), 0) FROM booking b"
        " WHERE b.concert_id = g.concert_id AND b.status = 'held' AND b.general_admission)"
        " FROM ga_inventory g WHERE g.concert_id = :c",
        c=sale.concert_id,
    )
    assert stock == 0 and sold == sale.stock


async def _run(
    base_client: httpx.AsyncClient,
    target: httpx.AsyncClient,
    app: Any,
    admin: dict[str, str],
    fans: list[dict[str, str]],
    strategy: str,
) -> Counter[str]:
    sale = await make_sale(base_client, admin)
    url = f"/concerts/{sale.concert_id}/bookings"
    racers = fans[:CLIENTS]
    won_status = 202 if strategy == ASYNC else 201
    seat_bodies = [
        {"seat_ids": [sale.seat_ids[i % 50]], "strategy": strategy} for i in range(CLIENTS)
    ]
    responses = await _race(target, racers, url, seat_bodies)
    bookings = await _bookings(target, racers, responses)
    reasons = await _check_seats(app, sale, responses, bookings, won_status)
    ga_bodies = [{"quantity": 1, "strategy": strategy} for _ in range(CLIENTS)]
    responses = await _race(target, racers, url, ga_bodies)
    bookings = await _bookings(target, racers, responses)
    await _check_stock(app, sale, responses, bookings, won_status)
    return reasons


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_two_processes(
    strategy: str,
    request: pytest.FixtureRequest,
    live_server: LiveServer,
    client: httpx.AsyncClient,
    app: Any,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
) -> None:
    if strategy == ASYNC:
        request.getfixturevalue("booking_consumer")
    # No keep-alive: a pooled connection can be reused just as uvicorn closes it when idle.
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=live_server.url, limits=limits, timeout=60) as target:
        reasons = await _run(client, target, app, admin_headers, fan_tokens, strategy)
    assert set(reasons) <= {"seat-taken", "booking-contention"}


async def test_inprocess_single_process(
    client: httpx.AsyncClient,
    app: Any,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
) -> None:
    reasons = await _run(client, client, app, admin_headers, fan_tokens, "inprocess")
    assert set(reasons) == {"seat-taken"}
