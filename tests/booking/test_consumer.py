"""The booking consumer as a real process on its own Tansu broker: duplicates applied once,
poison messages dead-lettered, SIGKILL and SIGTERM mid-stream, a rebalance — nothing lost,
nothing applied twice."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from app.booking.consumer import is_transient
from app.booking.inventory import Inventory
from app.booking.messages import DLQ_TOPIC, RESULTS_TOPIC, BookingRequestMessage
from app.booking.strategies.base import HoldRequest
from app.booking.strategies.redis_claim import request_id_for
from app.core.config import Settings
from app.core.state import AppState
from app.devstack.broker import (
    ensure_topics,
    free_port,
    start_broker,
    stop_process,
    wait_broker_ready,
)
from app.queue.signals import fresh_members
from tests.booking.conftest import Sale, make_sale
from tests.fixtures.booking_consumer import (
    ConsumerProcess,
    consumer_env,
    produce,
    read_topic,
    start_consumer,
)


@dataclass
class Pipeline:
    """A private broker (so every test sees only its own messages) and a consumer factory."""

    settings: Settings
    tmp: Path

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    def consumer(self, wait: bool = True, log: str = "consumer", **env: str) -> ConsumerProcess:
        group = {"TR_BOOKING_CONSUMER_GROUP": "booking-consumer-test"}
        return start_consumer(
            consumer_env(self.settings, **group, **env), self.tmp / f"{log}.log", wait=wait
        )


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    port = free_port()
    broker = start_broker(port, tmp_path / "tansu.log")
    bootstrap = f"127.0.0.1:{port}"
    try:
        asyncio.run(wait_broker_ready(bootstrap))
        asyncio.run(ensure_topics(bootstrap, settings.kafka_topics))
        yield Pipeline(settings.model_copy(update={"kafka_bootstrap": bootstrap}), tmp_path)
    finally:
        stop_process(broker.pid)


@pytest.fixture(scope="module")
async def users(app: Any) -> list[int]:
    async with app.state.tr.sessionmaker() as session, session.begin():
        rows = await session.execute(
            text(
                "INSERT INTO app_user (email, password_hash, display_name)"
                " SELECT 'consumer-' || :tag || '-' || g || '@example.com', 'x', 'Fan ' || g"
                " FROM generate_series(1, 400) g RETURNING id"
            ),
            {"tag": uuid.uuid4().hex[:8]},
        )
        return list(rows.scalars().all())


async def accept(
    state: AppState,
    sale: Sale,
    user_id: int,
    *,
    seat_ids: tuple[int, ...] = (),
    quantity: int = 1,
    key: str | None = None,
) -> BookingRequestMessage:
    """What the API does before producing: the Redis claim, then the message."""
    req = HoldRequest(
        user_id=user_id,
        concert_id=sale.concert_id,
        seat_ids=seat_ids,
        quantity=len(seat_ids) or quantity,
        max_per_user=4,
        idempotency_key=key,
        request_hash=None,
    )
    request_id = request_id_for(req)
    inventory = Inventory(state.redis, state.keys)
    await inventory.ensure_loaded(state.engine, sale.concert_id, timeout_s=5)
    claim = await inventory.claim(sale.concert_id, request_id, req.seat_ids, req.quantity)
    assert claim.status == "claimed", claim
    return BookingRequestMessage.of(
        req,
        request_id=request_id,
        hold_ttl_s=300,
        inventory_version=claim.version,
        created_at=datetime.now(UTC),
    )


def raw(msg: BookingRequestMessage) -> tuple[bytes, bytes]:
    return msg.key(), msg.model_dump_json().encode()


async def db(app: Any, sql: str, **params: Any) -> list[Any]:
    async with app.state.tr.sessionmaker() as session:
        return list((await session.execute(text(sql), params)).all())


async def inbox_count(app: Any, concert_id: int) -> int:
    [(n,)] = await db(app, "SELECT count(*) FROM booking_inbox WHERE concert_id = :c", c=concert_id)
    return int(n)


async def wait_inbox(app: Any, concert_id: int, n: int, consumer: ConsumerProcess) -> None:
    deadline = time.monotonic() + 20
    while await inbox_count(app, concert_id) < n:
        assert time.monotonic() < deadline, consumer.tail()
        await asyncio.sleep(0.05)


async def results(bootstrap: str, concert_id: int) -> list[dict[str, Any]]:
    found = [json.loads(r.value) for r in await read_topic(bootstrap, RESULTS_TOPIC)]
    return [r for r in found if r["concert_id"] == concert_id]


async def assert_consistent(app: Any, sale: Sale, requests: int) -> None:
    """Every request applied once, nothing sold twice, Redis and the database agree."""
    [(inbox, held, bookings)] = await db(
        app,
        "SELECT count(*), count(*) FILTER (WHERE outcome = 'held'),"
        " (SELECT count(*) FROM booking WHERE concert_id = :c)"
        " FROM booking_inbox WHERE concert_id = :c",
        c=sale.concert_id,
    )
    assert inbox == requests and held == bookings
    [(active, distinct)] = await db(
        app,
        "SELECT count(*), count(DISTINCT seat_id) FROM booking_seat bs"
        " JOIN booking b ON b.id = bs.booking_id WHERE b.concert_id = :c AND bs.active",
        c=sale.concert_id,
    )
    assert active == distinct
    [(stock, total, ga_held)] = await db(
        app,
        "SELECT g.stock, g.total, (SELECT coalesce(sum(quantity), 0) FROM booking b"
        " WHERE b.concert_id = g.concert_id AND b.general_admission)"
        " FROM ga_inventory g WHERE g.concert_id = :c",
        c=sale.concert_id,
    )
    assert stock == total - ga_held
    state = app.state.tr
    drift = await Inventory(state.redis, state.keys).compare(state.engine, sale.concert_id)
    assert drift.clean and drift.outstanding_claims == 0, drift


@pytest.fixture
async def sale(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> AsyncIterator[Sale]:
    yield await make_sale(client, admin_headers, rows=20, per_row=10, stock=200)


async def test_duplicates_are_applied_once(
    app: Any, pipeline: Pipeline, sale: Sale, users: list[int]
) -> None:
    state = app.state.tr
    seat = await accept(state, sale, users[0], seat_ids=(sale.seat_ids[0],))
    ga = await accept(state, sale, users[1], quantity=2)
    # Redelivery within one batch, and again in a later batch.
    await produce(pipeline.bootstrap, [raw(seat), raw(seat), raw(ga), raw(seat), raw(ga)])
    port = free_port()
    consumer = await asyncio.to_thread(
        pipeline.consumer, TR_BOOKING_CONSUMER_METRICS_PORT=str(port)
    )
    try:
        await wait_inbox(app, sale.concert_id, 2, consumer)
        await produce(pipeline.bootstrap, [raw(seat)])
        deadline = time.monotonic() + 10
        while len(await results(pipeline.bootstrap, sale.concert_id)) < 6:
            assert time.monotonic() < deadline, consumer.tail()
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        consumer.stop()
    assert 'tr_booking_consumer_processed_total{outcome="held"} 2.0' in metrics
    assert 'tr_booking_consumer_processed_total{outcome="duplicate"} 4.0' in metrics
    assert "tr_booking_consumer_batch_size_count" in metrics
    assert 'tr_booking_consumer_lag{partition="' in metrics
    outcomes = await results(pipeline.bootstrap, sale.concert_id)
    by_request: dict[str, set[tuple[str, int]]] = {}
    for r in outcomes:
        by_request.setdefault(r["request_id"], set()).add((r["status"], r["booking_id"]))
    assert set(by_request) == {str(seat.request_id), str(ga.request_id)}
    assert all(len(v) == 1 and next(iter(v))[0] == "held" for v in by_request.values())
    await assert_consistent(app, sale, 2)
    [(stock,)] = await db(
        app, "SELECT stock FROM ga_inventory WHERE concert_id = :c", c=sale.concert_id
    )
    assert stock == sale.stock - 2


async def test_poison_messages_go_to_the_dead_letter_topic(
    app: Any, pipeline: Pipeline, sale: Sale, users: list[int]
) -> None:
    state = app.state.tr
    valid = await accept(state, sale, users[2], seat_ids=(sale.seat_ids[1],))
    # Valid on the wire, but the database cannot apply it (no such user): a processing error.
    ghost = await accept(state, sale, 2**40, quantity=3)
    missing = json.loads(valid.model_dump_json())
    del missing["user_id"]
    key = str(sale.concert_id).encode()
    poison = [
        (key, b"{not json"),
        (key, json.dumps(missing).encode()),
        (key, json.dumps(json.loads(valid.model_dump_json()) | {"v": 99}).encode()),
        (None, b""),
    ]
    await produce(pipeline.bootstrap, [*poison[:2], raw(ghost), *poison[2:], raw(valid)])
    consumer = await asyncio.to_thread(pipeline.consumer)
    try:
        await wait_inbox(app, sale.concert_id, 2, consumer)
        deadline = time.monotonic() + 10
        while len(dead := await read_topic(pipeline.bootstrap, DLQ_TOPIC, idle_s=0.3)) < 5:
            assert time.monotonic() < deadline, consumer.tail()
        # The consumer keeps going after poison.
        later = await accept(state, sale, users[3], seat_ids=(sale.seat_ids[2],))
        await produce(pipeline.bootstrap, [raw(later)])
        await wait_inbox(app, sale.concert_id, 3, consumer)
    finally:
        consumer.stop()
    headers = [dict(r.headers) for r in dead]
    kinds = Counter(h["error-kind"].decode() for h in headers)
    assert kinds == {"malformed": 4, "processing_error": 1}
    reasons = " | ".join(h["error"].decode() for h in headers)
    assert "user_id" in reasons and "Invalid JSON" in reasons and "ForeignKeyViolation" in reasons
    assert {h["source-topic"] for h in headers} == {b"booking-requests"}
    assert sorted(r.value for r in dead)[0] == b""
    rows = dict(
        await db(
            app,
            "SELECT request_id::text, outcome || ':' || coalesce(result->>'reason', '')"
            " FROM booking_inbox WHERE concert_id = :c",
            c=sale.concert_id,
        )
    )
    assert rows == {
        str(valid.request_id): "held:",
        str(ghost.request_id): "rejected:internal-error",
        str(later.request_id): "held:",
    }
    # The ghost's claim went back to Redis: every ticket is accounted for.
    await assert_consistent(app, sale, 3)


async def _stream(app: Any, sale: Sale, users: list[int]) -> list[BookingRequestMessage]:
    """200 seat requests and 200 GA requests, one fan each, all claimed in Redis."""
    state = app.state.tr
    seats = [await accept(state, sale, users[i], seat_ids=(sale.seat_ids[i],)) for i in range(200)]
    ga = [await accept(state, sale, users[200 + i]) for i in range(200)]
    return [m for pair in zip(seats, ga, strict=True) for m in pair]


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    app: Any, pipeline: Pipeline, sale: Sale, users: list[int]
) -> None:
    messages = await _stream(app, sale, users)
    await produce(pipeline.bootstrap, [raw(m) for m in messages])
    # Small batches, so the kill lands between a database commit and its offset commit.
    consumer = await asyncio.to_thread(pipeline.consumer, TR_BOOKING_CONSUMER_BATCH_SIZE="7")
    while (done := await inbox_count(app, sale.concert_id)) < 60:
        assert consumer.alive(), consumer.tail()
        await asyncio.sleep(0.005)
    consumer.signal(signal.SIGKILL)
    consumer.wait_exit()
    killed_at = await inbox_count(app, sale.concert_id)
    assert 60 <= done <= killed_at < len(messages)
    restarted = await asyncio.to_thread(pipeline.consumer)
    try:
        await wait_inbox(app, sale.concert_id, len(messages), restarted)
        await asyncio.sleep(0.3)  # let a replayed tail settle its Redis claims
    finally:
        restarted.stop()
    await assert_consistent(app, sale, len(messages))
    [(held,)] = await db(
        app,
        "SELECT count(*) FROM booking_inbox WHERE concert_id = :c AND outcome = 'held'",
        c=sale.concert_id,
    )
    assert held == len(messages)
    outcomes = await results(pipeline.bootstrap, sale.concert_id)
    assert {r["request_id"] for r in outcomes} == {str(m.request_id) for m in messages}


async def test_sigterm_finishes_the_batch_and_commits(
    app: Any, pipeline: Pipeline, sale: Sale, users: list[int]
) -> None:
    messages = await _stream(app, sale, users)
    await produce(pipeline.bootstrap, [raw(m) for m in messages])
    consumer = await asyncio.to_thread(pipeline.consumer, TR_BOOKING_CONSUMER_BATCH_SIZE="7")
    while await inbox_count(app, sale.concert_id) < 60:
        await asyncio.sleep(0.005)
    consumer.signal(signal.SIGTERM)
    assert await asyncio.to_thread(consumer.wait_exit) == 0
    assert any(e.get("event") == "booking_consumer_stopped" for e in consumer.events())
    stopped_at = await inbox_count(app, sale.concert_id)
    assert stopped_at < len(messages)
    restarted = await asyncio.to_thread(pipeline.consumer)
    try:
        await wait_inbox(app, sale.concert_id, len(messages), restarted)
        await asyncio.sleep(0.3)
    finally:
        restarted.stop()
    await assert_consistent(app, sale, len(messages))
    # Graceful: every processed offset was committed, so nothing was delivered twice.
    outcomes = await results(pipeline.bootstrap, sale.concert_id)
    assert Counter(Counter(r["request_id"] for r in outcomes).values()) == {1: len(messages)}


async def test_a_second_consumer_joining_mid_stream_loses_and_duplicates_nothing(
    app: Any, pipeline: Pipeline, sale: Sale, users: list[int]
) -> None:
    messages = await _stream(app, sale, users)

    async def trickle() -> None:  # a steady stream across the rebalance (~6 s)
        for i in range(0, len(messages), 20):
            await produce(pipeline.bootstrap, [raw(m) for m in messages[i : i + 20]])
            await asyncio.sleep(0.3)

    first = await asyncio.to_thread(pipeline.consumer)
    second = None
    try:
        producing = asyncio.create_task(trickle())
        await asyncio.sleep(0.5)
        second = await asyncio.to_thread(pipeline.consumer)
        await producing
        await wait_inbox(app, sale.concert_id, len(messages), second)
        await asyncio.sleep(0.3)
        assert 0 < len(second.assigned()) < 12
        assert len(first.assigned()) + len(second.assigned()) == 12
        for member in (first, second):
            assert any(e.get("event") == "batch_processed" for e in member.events())
    finally:
        first.stop()
        if second is not None:
            second.stop()
    await assert_consistent(app, sale, len(messages))
    outcomes = await results(pipeline.bootstrap, sale.concert_id)
    assert {r["request_id"] for r in outcomes} == {str(m.request_id) for m in messages}


async def test_two_to_three_consumers_rebalance_loses_and_duplicates_nothing(
    app: Any, pipeline: Pipeline, sale: Sale, users: list[int]
) -> None:
    messages = await _stream(app, sale, users)
    state: AppState = app.state.tr
    half = len(messages) // 2

    async def trickle(part: list[BookingRequestMessage]) -> None:
        for i in range(0, len(part), 20):
            await produce(pipeline.bootstrap, [raw(m) for m in part[i : i + 20]])
            await asyncio.sleep(0.2)

    members: list[ConsumerProcess] = []
    try:
        for name in ("one", "two"):
            members.append(await asyncio.to_thread(pipeline.consumer, log=name))
        # The third member joins while the first half is still streaming in; the second half
        # is produced only once it owns partitions, so both halves cross a rebalance.
        producing = asyncio.create_task(trickle(messages[:half]))
        await asyncio.sleep(0.5)
        members.append(await asyncio.to_thread(pipeline.consumer, log="three"))
        await producing
        await trickle(messages[half:])
        await wait_inbox(app, sale.concert_id, len(messages), members[2])
        await asyncio.sleep(0.3)
        shares = [len(m.assigned()) for m in members]
        assert all(share > 0 for share in shares) and sum(shares) == 12, shares
        # Each member reports its own lag/latency to the admission controller's signals (a
        # member busy rejoining the group may skip a report or two).
        for _ in range(50):
            reporting = await fresh_members(state.redis, state.keys)
            if len(reporting) == 3:
                break
            await asyncio.sleep(0.2)
        assert len(reporting) == 3, reporting
    finally:
        for member in members:
            member.stop()
    # Stopped cleanly: they no longer count, without waiting for their reports to go stale.
    assert await fresh_members(state.redis, state.keys) == {}
    await assert_consistent(app, sale, len(messages))
    outcomes = await results(pipeline.bootstrap, sale.concert_id)
    assert {r["request_id"] for r in outcomes} == {str(m.request_id) for m in messages}


async def test_outages_are_retried_and_bad_data_is_not(settings: Settings) -> None:
    """A dependency failure must never dead-letter a valid request; bad data must not loop."""
    engine = create_async_engine(
        settings.database_url, connect_args={"server_settings": {"statement_timeout": "20"}}
    )
    unreachable = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as timeout:
                await conn.execute(text("SELECT pg_sleep(1)"))
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as bad:
                await conn.execute(text("SELECT 1 / 0"))
        with pytest.raises(OSError) as refused:
            async with unreachable.connect():
                pass
    finally:
        await engine.dispose()
        await unreachable.dispose()
    assert is_transient(timeout.value) and is_transient(refused.value)
    assert not is_transient(bad.value)
