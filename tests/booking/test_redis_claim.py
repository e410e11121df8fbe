"""Strategy F `redis_claim` end to end: Redis claim → 202 → Kafka → booking consumer → PostgreSQL,
with the real API, Redis, Tansu broker and consumer process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from app.booking.inventory import Inventory
from app.core.config import Settings
from app.devstack.broker import (
    ensure_topics,
    free_port,
    start_broker,
    stop_process,
    wait_broker_ready,
)
from app.main import create_app
from tests.booking.conftest import make_sale
from tests.fixtures.booking_consumer import (
    ConsumerProcess,
    consumer_env,
    start_consumer,
)

F = "redis_claim"
ROOT = Path(__file__).resolve().parents[2]


async def wait_outcome(
    client: httpx.AsyncClient, accepted: httpx.Response, fan: dict[str, str], timeout: float = 15
) -> dict[str, Any]:
    """Poll the Location of a 202 until the consumer decided."""
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(location, headers=fan)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] != "pending":
            return body
        assert time.monotonic() < deadline, f"still pending after {timeout} s"
        await asyncio.sleep(0.05)


async def eventually(
    probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 5
) -> None:
    """The consumer settles Redis just after its database commit, which polls may see first."""
    deadline = time.monotonic() + timeout
    while (value := await probe()) != expected:
        assert time.monotonic() < deadline, value
        await asyncio.sleep(0.02)


def inventory(app: Any) -> Inventory:
    state = app.state.tr
    return Inventory(state.redis, state.keys)


async def db(app: Any, sql: str, **params: Any) -> list[Any]:
    async with app.state.tr.sessionmaker() as session:
        return list((await session.execute(text(sql), params)).all())


async def redis_seats(app: Any, concert_id: int) -> dict[int, str]:
    raw = await app.state.tr.redis.hgetall(inventory(app).keys(concert_id)[1])
    return {int(k): v.decode() for k, v in raw.items()}


async def redis_ga(app: Any, concert_id: int) -> int:
    return int(await app.state.tr.redis.get(inventory(app).keys(concert_id)[2]))


async def claims(app: Any, concert_id: int) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = await app.state.tr.redis.hgetall(inventory(app).keys(concert_id)[3])
    return found


async def test_seat_hold_end_to_end(
    client: httpx.AsyncClient,
    app: Any,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    booking_consumer: ConsumerProcess,
) -> None:
    sale = await make_sale(client, admin_headers)
    url = f"/concerts/{sale.concert_id}/bookings"
    fan, rival = fan_tokens[20], fan_tokens[21]
    accepted = await client.post(
        url, json={"seat_ids": sale.seat_ids[:2], "strategy": F}, headers=fan
    )
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["status"] == "pending" and body["concert_id"] == sale.concert_id
    assert accepted.headers["Location"] == f"/bookings/requests/{body['request_id']}"
    # The claim is in Redis at once: a rival gets 409 without waiting for the consumer.
    taken = await client.post(
        url, json={"seat_ids": sale.seat_ids[1:3], "strategy": F}, headers=rival
    )
    assert taken.status_code == 409 and taken.json()["type"].endswith("/seat-taken")
    assert taken.json()["seat_ids"] == [sale.seat_ids[1]]
    # Only the owner sees the request.
    peek = await client.get(accepted.headers["Location"], headers=rival)
    assert peek.status_code == 404

    outcome = await wait_outcome(client, accepted, fan)
    assert outcome["status"] == "held" and outcome["booking_id"]
    booking = (await client.get(f"/bookings/{outcome['booking_id']}", headers=fan)).json()
    assert booking["status"] == "held" and booking["strategy"] == F
    assert booking["seat_ids"] == sale.seat_ids[:2]
    assert booking["amount_minor"] == 2 * 150_000
    seats = await redis_seats(app, sale.concert_id)
    assert [seats[s] for s in sale.seat_ids[:3]] == ["0", "0", "1"]
    await eventually(lambda: claims(app, sale.concert_id), {})  # settled by the consumer
    # Foreign seats are refused from Redis as well (422, like the other strategies).
    other = await make_sale(client, admin_headers)
    foreign = await client.post(
        url, json={"seat_ids": [other.seat_ids[0]], "strategy": F}, headers=rival
    )
    assert foreign.status_code == 422 and foreign.json()["type"].endswith("/invalid-seats")


async def test_general_admission_and_database_refusal(
    client: httpx.AsyncClient,
    app: Any,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    booking_consumer: ConsumerProcess,
) -> None:
    sale = await make_sale(client, admin_headers, stock=5, max_per_user=3)
    url = f"/concerts/{sale.concert_id}/bookings"
    fan = fan_tokens[22]
    first = await client.post(url, json={"quantity": 2, "strategy": F}, headers=fan)
    assert (await wait_outcome(client, first, fan))["status"] == "held"
    # Redis does not know the per-fan limit; the database quota refuses, and the claim returns.
    over = await client.post(url, json={"quantity": 2, "strategy": F}, headers=fan)
    refused = await wait_outcome(client, over, fan)
    assert refused == refused | {"status": "rejected", "reason": "ticket-limit-exceeded"}
    assert refused["booking_id"] is None
    await eventually(lambda: redis_ga(app, sale.concert_id), 3)
    sold_out = await client.post(url, json={"quantity": 4, "strategy": F}, headers=fan_tokens[23])
    assert sold_out.status_code == 409 and sold_out.json()["type"].endswith("/sold-out")
    [(stock, held)] = await db(
        app,
        "SELECT g.stock, (SELECT coalesce(sum(quantity), 0) FROM booking b"
        " WHERE b.concert_id = g.concert_id AND b.status = 'held')"
        " FROM ga_inventory g WHERE g.concert_id = :c",
        c=sale.concert_id,
    )
    assert (stock, held) == (3, 2)


async def test_idempotent_retry_books_once(
    client: httpx.AsyncClient,
    app: Any,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    booking_consumer: ConsumerProcess,
) -> None:
    sale = await make_sale(client, admin_headers)
    url = f"/concerts/{sale.concert_id}/bookings"
    fan = fan_tokens[24] | {"Idempotency-Key": "f-retry-0001"}
    body = {"seat_ids": sale.seat_ids[:1], "strategy": F}
    # Concurrent retries map to one request id (one claim, one inbox row, one booking).
    first, *retries = await asyncio.gather(
        *(client.post(url, json=body, headers=fan) for _ in range(5))
    )
    assert {r.status_code for r in (first, *retries)} == {202}
    assert len({r.json()["request_id"] for r in (first, *retries)}) == 1
    outcome = await wait_outcome(client, first, fan)
    assert outcome["status"] == "held"
    # Once written, a retry is answered from the booking like every other strategy (200).
    late = await client.post(url, json=body, headers=fan)
    assert late.status_code == 200 and late.json()["id"] == outcome["booking_id"]
    [(bookings, inbox)] = await db(
        app,
        "SELECT (SELECT count(*) FROM booking WHERE concert_id = :c),"
        " (SELECT count(*) FROM booking_inbox WHERE concert_id = :c)",
        c=sale.concert_id,
    )
    assert (bookings, inbox) == (1, 1)
    await eventually(lambda: claims(app, sale.concert_id), {})


async def test_stalled_broker_answers_503_and_the_late_delivery_books_nothing(
    settings: Settings,
    client: httpx.AsyncClient,
    app: Any,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    tmp_path: Path,
) -> None:
    sale = await make_sale(client, admin_headers)
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = start_broker(port, tmp_path / "tansu.log")
    isolated = settings.model_copy(
        update={"kafka_bootstrap": bootstrap, "booking_produce_timeout_s": 1.0}
    )
    consumer = None
    try:
        await wait_broker_ready(bootstrap)
        await ensure_topics(bootstrap, settings.kafka_topics)
        consumer = await asyncio.to_thread(
            start_consumer, consumer_env(isolated), tmp_path / "consumer.log"
        )
        application = create_app(isolated)
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                url = f"/concerts/{sale.concert_id}/bookings"
                fan = fan_tokens[25]
                ok = await c.post(
                    url, json={"seat_ids": sale.seat_ids[:1], "strategy": F}, headers=fan
                )
                assert (await wait_outcome(c, ok, fan))["status"] == "held"
                # A stalled broker: the request is sent but not acknowledged in time.
                os.kill(broker.pid, signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    r = await c.post(
                        url, json={"seat_ids": sale.seat_ids[1:2], "strategy": F}, headers=fan
                    )
                    assert time.monotonic() - started < 5
                    assert r.status_code == 503, r.text
                    assert r.json()["type"].endswith("/booking-queue-unavailable")
                    assert r.headers["Retry-After"] == "1"
                    # The claim is given back at once and tombstoned: the produce may still land.
                    assert (await redis_seats(app, sale.concert_id))[sale.seat_ids[1]] == "1"
                    [(request_id, tombstone)] = (await claims(app, sale.concert_id)).items()
                    assert tombstone.startswith(b"x:")
                finally:
                    os.kill(broker.pid, signal.SIGCONT)
                # It does land (the broker wakes up); the consumer refuses it.
                deadline = time.monotonic() + 15
                while not (
                    rows := await db(
                        app,
                        "SELECT outcome, result->>'reason' FROM booking_inbox WHERE request_id = :r",
                        r=uuid.UUID(request_id.decode()),
                    )
                ):
                    assert time.monotonic() < deadline, consumer.tail()
                    await asyncio.sleep(0.1)
        assert rows == [("rejected", "withdrawn")]
        await eventually(lambda: claims(app, sale.concert_id), {})
        assert (await redis_seats(app, sale.concert_id))[sale.seat_ids[1]] == "1"
        [(bookings,)] = await db(
            app, "SELECT count(*) FROM booking WHERE concert_id = :c", c=sale.concert_id
        )
        assert bookings == 1
    finally:
        if consumer is not None:
            consumer.stop()
        await asyncio.to_thread(stop_process, broker.pid)


async def test_expired_hold_returns_its_claim(
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    booking_consumer: ConsumerProcess,
) -> None:
    sale = await make_sale(client, admin_headers)
    short = settings.model_copy(update={"hold_ttl_s": 1, "sweeper_interval_s": 0.2})
    application = create_app(short)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            url = f"/concerts/{sale.concert_id}/bookings"
            fan, next_fan = fan_tokens[27], fan_tokens[28]
            seat = await c.post(
                url, json={"seat_ids": sale.seat_ids[:1], "strategy": F}, headers=fan
            )
            ga = await c.post(url, json={"quantity": 2, "strategy": F}, headers=fan)
            held = [await wait_outcome(c, r, fan) for r in (seat, ga)]
            assert [h["status"] for h in held] == ["held", "held"]
            assert await redis_ga(application, sale.concert_id) == sale.stock - 2
            # The TTL travelled with the message: the consumer wrote a 1 s hold.
            booking = (await c.get(f"/bookings/{held[0]['booking_id']}", headers=fan)).json()
            assert booking["status"] == "held"
            # Each hold's expiry returns it to Redis (the two may expire in different passes).
            deadline = time.monotonic() + 10
            while (
                (await redis_seats(application, sale.concert_id))[sale.seat_ids[0]],
                await redis_ga(application, sale.concert_id),
            ) != ("1", sale.stock):
                assert time.monotonic() < deadline, "the sweeper did not return the holds to Redis"
                await asyncio.sleep(0.1)
            for h in held:
                r = await c.get(f"/bookings/{h['booking_id']}", headers=fan)
                assert r.json()["status"] == "expired"
            again = await c.post(
                url, json={"seat_ids": sale.seat_ids[:1], "strategy": F}, headers=next_fan
            )
            assert (await wait_outcome(c, again, next_fan))["status"] == "held"


def reconcile(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "TR_DATABASE_URL": settings.database_url,
        "TR_REDIS_URL": settings.redis_url,
        "TR_REDIS_PREFIX": settings.redis_prefix,
        "TR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TR_RUN_DIR": str(tmp_path),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "reconcile", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


async def test_redis_loss_is_repaired_from_the_database(
    settings: Settings,
    client: httpx.AsyncClient,
    app: Any,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    booking_consumer: ConsumerProcess,
    tmp_path: Path,
) -> None:
    sale = await make_sale(client, admin_headers)
    url = f"/concerts/{sale.concert_id}/bookings"
    fan = fan_tokens[29]
    for body in ({"seat_ids": sale.seat_ids[:2]}, {"quantity": 2}):
        r = await client.post(url, json=body | {"strategy": F}, headers=fan)
        assert (await wait_outcome(client, r, fan))["status"] == "held"
    clean = reconcile(settings, tmp_path, str(sale.concert_id))
    assert clean.returncode == 0, clean.stdout + clean.stderr

    # Drift: a held seat looks free in Redis (the dangerous direction) and GA is off by one.
    redis = app.state.tr.redis
    keys = inventory(app).keys(sale.concert_id)
    await redis.hset(keys[1], str(sale.seat_ids[0]), "1")
    await redis.incrby(keys[2], 1)
    drift = reconcile(settings, tmp_path, "--all")
    assert drift.returncode == 1, drift.stdout
    assert "drift" in drift.stdout and str(sale.concert_id) in drift.stdout

    # Redis loss: the concert's keys are gone.
    await redis.delete(*keys)
    lost = reconcile(settings, tmp_path, str(sale.concert_id))
    assert lost.returncode == 1 and "not loaded" in lost.stdout, lost.stdout
    repaired = reconcile(settings, tmp_path, str(sale.concert_id), "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repaired" in repaired.stdout
    seats = await redis_seats(app, sale.concert_id)
    assert {s for s, v in seats.items() if v == "0"} == set(sale.seat_ids[:2])
    assert len(seats) == 50
    assert await redis_ga(app, sale.concert_id) == sale.stock - 2
    assert reconcile(settings, tmp_path, str(sale.concert_id)).returncode == 0

    # Claims after the repair are right: held seats refused at once, free ones accepted.
    rival = fan_tokens[30]
    taken = await client.post(
        url, json={"seat_ids": sale.seat_ids[1:2], "strategy": F}, headers=rival
    )
    assert taken.status_code == 409
    free = await client.post(
        url, json={"seat_ids": sale.seat_ids[2:3], "strategy": F}, headers=rival
    )
    assert (await wait_outcome(client, free, rival))["status"] == "held"


async def test_lazy_load_after_redis_loss_accounts_for_the_database(
    client: httpx.AsyncClient,
    app: Any,
    admin_headers: dict[str, str],
    fan_tokens: list[dict[str, str]],
    booking_consumer: ConsumerProcess,
) -> None:
    sale = await make_sale(client, admin_headers)
    url = f"/concerts/{sale.concert_id}/bookings"
    fan = fan_tokens[31]
    r = await client.post(url, json={"seat_ids": sale.seat_ids[:1], "strategy": F}, headers=fan)
    assert (await wait_outcome(client, r, fan))["status"] == "held"
    await app.state.tr.redis.delete(*inventory(app).keys(sale.concert_id))
    # Without a repair, the next claim loads the inventory from the database first.
    again = await client.post(
        url, json={"seat_ids": sale.seat_ids[:1], "strategy": F}, headers=fan_tokens[32]
    )
    assert again.status_code == 409
