"""Every strategy under real concurrency: 200 clients, 2 API processes (and 1 for `inprocess`),
50 seats contested 4 ways and general-admission stock 100. Exactly the stock is sold, nothing
twice, every client gets 201 or 409."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.booking.conftest import Sale, make_sale
from tests.conftest import LiveServer

STRATEGIES = ["inprocess", "pessimistic", "optimistic", "redis_lock", "atomic"]
CLIENTS = 200


async def _race(
    client: httpx.AsyncClient, fans: list[dict[str, str]], url: str, bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    return await asyncio.gather(
        *(client.post(url, json=body, headers=fan) for fan, body in zip(fans, bodies, strict=True))
    )


async def _db(app: Any, sql: str, **params: Any) -> Any:
    async with app.state.tr.sessionmaker() as session:
        return (await session.execute(text(sql), params)).all()


async def _check_seats(app: Any, sale: Sale, responses: list[httpx.Response]) -> Counter[str]:
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {201, 409}, [r.text for r in responses if r.status_code not in (201, 409)][
        :3
    ]
    assert codes[201] == len(sale.seat_ids) == 50
    won = [r.json()["seat_ids"][0] for r in responses if r.status_code == 201]
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


async def _check_stock(app: Any, sale: Sale, responses: list[httpx.Response]) -> None:
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {201, 409}, [r.text for r in responses if r.status_code not in (201, 409)][
        :3
    ]
    assert codes[201] == sale.stock
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
    seat_bodies = [
        {"seat_ids": [sale.seat_ids[i % 50]], "strategy": strategy} for i in range(CLIENTS)
    ]
    reasons = await _check_seats(app, sale, await _race(target, fans[:CLIENTS], url, seat_bodies))
    ga_bodies = [{"quantity": 1, "strategy": strategy} for _ in range(CLIENTS)]
    await _check_stock(app, sale, await _race(target, fans[:CLIENTS], url, ga_bodies))
    return reasons


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_two_processes(
    strategy: str,
    live_server: LiveServer,
    client: httpx.AsyncClient,
    app: Any,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
) -> None:
    limits = httpx.Limits(max_connections=CLIENTS)
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
