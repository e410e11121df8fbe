"""The booking consumer: applies `booking-requests` to PostgreSQL exactly once.

Per batch (aiokafka `getmany`, manual commits):
1. parse; malformed messages are dead-lettered (`booking-requests.dlq`, reason in a header);
2. one database transaction: for each request insert the inbox row (`ON CONFLICT DO NOTHING`:
   present = a redelivery, its recorded outcome is reused), then, in a savepoint, the hold with
   the database constraints every strategy relies on (conditional seat UPDATE or stock UPDATE,
   quota, booking, booking_seat); a refusal is recorded as `rejected` with its reason;
3. commit; then settle the Redis claims (drop accepted ones, give rejected ones back) and the
   fans' status records; then publish the outcomes to `booking-results` (and the DLQ) and wait
   for the broker; then commit the Kafka offsets.
A crash anywhere replays the batch: the inbox turns it into the same outcomes, republished.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from app.booking import repository
from app.booking.inventory import (
    ClaimState,
    Inventory,
    RequestStatus,
    SettleAction,
    Settlement,
)
from app.booking.messages import (
    DLQ_TOPIC,
    REQUESTS_TOPIC,
    RESULTS_TOPIC,
    BookingRequestMessage,
    BookingResultMessage,
)
from app.booking.strategies.atomic import AtomicStrategy
from app.booking.strategies.base import (
    HoldRequest,
    IdempotentReplay,
    map_integrity_error,
    persist_hold,
)
from app.core.kafka import time_ack
from app.core.problems import ProblemError
from app.core.state import AppState
from app.queue.signals import report_member, withdraw_member

log = structlog.get_logger(__name__)

BATCH_SIZE = Histogram(
    "tr_booking_consumer_batch_size",
    "Messages per consumed batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
BATCH_DURATION = Histogram(
    "tr_booking_consumer_batch_duration_seconds",
    "Time to apply, settle, publish and commit one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROCESSED = Counter(
    "tr_booking_consumer_processed_total",
    "Booking requests processed, by outcome (held, rejected, duplicate = redelivery).",
    ["outcome"],
)
REJECTED = Counter(
    "tr_booking_consumer_rejected_total",
    "Booking requests the database refused, by reason.",
    ["reason"],
)
DEAD_LETTERED = Counter(
    "tr_booking_consumer_dlq_total",
    "Messages sent to the dead-letter topic, by kind (malformed, processing_error).",
    ["kind"],
)
BATCH_RETRIES = Counter(
    "tr_booking_consumer_batch_retries_total",
    "Batches retried after a transient failure (database, Redis or broker unavailable).",
)
REQUEST_LATENCY = Histogram(
    "tr_booking_request_latency_seconds",
    "From the broker's acknowledgement of a booking request (202) to its outcome in PostgreSQL.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
# Series that exist before their first event, so dashboards and alerts read 0, not "no data".
for _label in ("malformed", "processing_error"):
    DEAD_LETTERED.labels(_label)
for _label in ("held", "rejected", "duplicate"):
    PROCESSED.labels(_label)
for _label in ("seat-taken", "sold-out", "ticket-limit-exceeded", "withdrawn"):
    REJECTED.labels(_label)
LAG = Gauge(
    "tr_booking_consumer_lag",
    "Messages not yet consumed, per assigned partition of booking-requests.",
    ["partition"],
)

_INBOX_INSERT = text(
    "INSERT INTO booking_inbox (request_id, user_id, concert_id, outcome, result)"
    " VALUES (:rid, :uid, :cid, 'pending', '{}') ON CONFLICT (request_id) DO NOTHING"
    " RETURNING request_id"
)
_INBOX_UPDATE = text(
    "UPDATE booking_inbox SET outcome = :outcome, booking_id = :bid,"
    " result = CAST(:result AS jsonb) WHERE request_id = :rid"
)
_INBOX_READ = text(
    "SELECT i.outcome, i.booking_id, i.result, b.status FROM booking_inbox i"
    " LEFT JOIN booking b ON b.id = i.booking_id WHERE i.request_id = :rid"
)
ACTIVE = ("held", "paid", "confirmed")


# SQLSTATE classes worth retrying: connection exception, transaction rollback (serialization,
# deadlock), insufficient resources (too many connections), operator intervention (timeouts,
# shutdown). A bad message never causes these.
_RETRYABLE_SQLSTATE = ("08", "40", "53", "57")


def is_transient(exc: BaseException) -> bool:
    """Failures of a dependency (retry the batch), as opposed to a bad message or a bug."""
    if isinstance(exc, DBAPIError):
        state = repository.sqlstate_of(exc) or ""
        if exc.connection_invalidated or state.startswith(_RETRYABLE_SQLSTATE):
            return True
    return isinstance(
        exc,
        OperationalError
        | InterfaceError
        | OSError
        | TimeoutError
        | RedisConnectionError
        | RedisTimeoutError
        | KafkaError,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    message: BookingRequestMessage
    status: Literal["held", "rejected"]
    settlement: Settlement
    booking_id: int | None = None
    reason: str | None = None
    duplicate: bool = False

    def result(self, processed_at: datetime) -> BookingResultMessage:
        return BookingResultMessage(
            request_id=self.message.request_id,
            user_id=self.message.user_id,
            concert_id=self.message.concert_id,
            status=self.status,
            booking_id=self.booking_id,
            reason=self.reason,
            processed_at=processed_at,
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: ConsumerRecord[bytes, bytes]
    kind: Literal["malformed", "processing_error"]
    reason: str


def _settlement(
    msg: BookingRequestMessage,
    action: SettleAction,
    seat_ids: Sequence[int] | None = None,
    quantity: int | None = None,
) -> Settlement:
    return Settlement(
        msg.request_id,
        action,
        not msg.seat_ids,
        tuple(msg.seat_ids if seat_ids is None else seat_ids),
        msg.quantity if quantity is None else quantity,
    )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BookingConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # The batch in flight finishes (and commits) before the partitions move on.
        async with self.owner.batch_lock:
            await self.owner.commit_processed()
        for tp in revoked:
            with contextlib.suppress(KeyError):
                LAG.remove(str(tp.partition))
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))


@dataclass
class _SignalWindow:
    """What this member measured since its last report to the admission controller."""

    latencies_ms: list[float]
    errors: int = 0
    messages: int = 0

    def p95_ms(self) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class BookingConsumer:
    """Consumes `booking-requests` in batches; one instance per process, several per group."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.settings = state.settings
        self.inventory = Inventory(state.redis, state.keys)
        self.batch_lock = asyncio.Lock()
        self._processed: dict[TopicPartition, int] = {}
        self._atomic = AtomicStrategy()
        self._ttl_states: dict[int, AppState] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.member = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._window = _SignalWindow([])
        self._next_signals = 0.0

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in progress is finished and committed."""
        if not await self._connect(stop):
            return
        assert self.consumer is not None
        try:
            while not stop.is_set():
                batch = await self.consumer.getmany(
                    timeout_ms=self.settings.booking_consumer_poll_timeout_ms,
                    max_records=self.settings.booking_consumer_batch_size,
                )
                if batch:
                    async with self.batch_lock:
                        await self._process_retrying(batch, stop)
                await self._report_signals()
        finally:
            await self.consumer.stop()
            if self.producer is not None:
                await self.producer.stop()
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                await withdraw_member(self.state.redis, self.state.keys, self.member)
            log.info("booking_consumer_stopped")

    async def _connect(self, stop: asyncio.Event) -> bool:
        delay = 0.5
        while not stop.is_set():
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                enable_idempotence=False,  # unsupported by Tansu; the inbox makes writes idempotent
                acks="all",
                linger_ms=5,
            )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                group_id=self.settings.booking_consumer_group,
                client_id="booking-consumer",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self.settings.booking_consumer_session_timeout_ms,
                heartbeat_interval_ms=max(
                    100, self.settings.booking_consumer_session_timeout_ms // 4
                ),
            )
            try:
                await producer.start()
                consumer.subscribe([REQUESTS_TOPIC], listener=_Rebalance(self))
                await consumer.start()
            except (KafkaError, OSError) as exc:
                log.warning("kafka_unavailable", error=repr(exc), retry_in_s=delay)
                await producer.stop()
                await consumer.stop()
                await _sleep_unless(stop, delay)
                delay = min(delay * 2, 10.0)
                continue
            self.producer, self.consumer = producer, consumer
            log.info("booking_consumer_started", group=self.settings.booking_consumer_group)
            return True
        return False

    async def _process_retrying(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], stop: asyncio.Event
    ) -> None:
        delay = 0.2
        while True:
            try:
                await self.process_batch(batch)
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                BATCH_RETRIES.inc()
                self._window.errors += 1
                log.warning("batch_failed_transient", error=repr(exc), retry_in_s=delay)
                if stop.is_set():
                    return  # not committed: the batch is redelivered after the restart
                await _sleep_unless(stop, delay)
                delay = min(delay * 2, 5.0)

    async def _report_signals(self) -> None:
        """Lag per partition to /metrics; every `booking_consumer_signals_s` this member's lag,
        latency and errors to the admission controller's signals (app/queue/signals.py)."""
        assert self.consumer is not None
        lag = 0
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                position = await self.consumer.position(tp)
                behind = max(0, highwater - position)
                LAG.labels(str(tp.partition)).set(behind)
                lag += behind
        now = time.monotonic()
        if now < self._next_signals:
            return
        interval = self.settings.booking_consumer_signals_s
        self._next_signals = now + interval
        window, self._window = self._window, _SignalWindow([])
        try:
            await report_member(
                self.state.redis,
                self.state.keys,
                self.member,
                lag=lag,
                p95_ms=window.p95_ms(),
                errors=window.errors,
                messages=window.messages,
                ttl_s=3 * interval,
            )
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Advisory only: a missing report counts as healthy, consuming goes on.
            log.warning("signals_report_failed", error=repr(exc))

    async def commit_processed(self) -> None:
        """Commit the offsets of fully processed batches (also called on partition revocation)."""
        if not self._processed or self.consumer is None:
            return
        offsets, self._processed = self._processed, {}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved to another member, which replays them; the inbox dedupes.
            log.warning("offset_commit_lost", error=repr(exc))

    # --- one batch ------------------------------------------------------------------------

    async def process_batch(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        started = time.perf_counter()
        parsed: list[BookingRequestMessage] = []
        records_of: dict[uuid.UUID, ConsumerRecord[bytes, bytes]] = {}
        letters: list[DeadLetter] = []
        size = 0
        for records in batch.values():
            for record in records:
                size += 1
                try:
                    msg = BookingRequestMessage.model_validate_json(record.value or b"")
                except ValidationError as exc:
                    letters.append(DeadLetter(record, "malformed", _reason(exc)))
                    continue
                parsed.append(msg)
                records_of[msg.request_id] = record
        BATCH_SIZE.observe(size)
        outcomes, failed = await self._apply_isolating(parsed)
        letters += [
            DeadLetter(records_of[msg.request_id], "processing_error", reason)
            for msg, reason in failed
        ]
        await self._settle(outcomes)
        await self._publish(outcomes, letters)
        for tp, records in batch.items():
            self._processed[tp] = records[-1].offset + 1
        await self.commit_processed()
        self._count(outcomes, letters)
        self._measure(batch, letters)
        BATCH_DURATION.observe(time.perf_counter() - started)
        log.info(
            "batch_processed",
            size=size,
            held=sum(o.status == "held" and not o.duplicate for o in outcomes),
            rejected=sum(o.status == "rejected" and not o.duplicate for o in outcomes),
            duplicates=sum(o.duplicate for o in outcomes),
            dead_lettered=len(letters),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _apply_isolating(
        self, messages: list[BookingRequestMessage]
    ) -> tuple[list[Outcome], list[tuple[BookingRequestMessage, str]]]:
        """Apply in one transaction; if it fails for a non-transient reason, find the culprit
        by applying one message per transaction, and dead-letter only that one."""
        if not messages:
            return [], []
        try:
            return await self._apply(messages), []
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(messages) == 1:
                log.exception("booking_request_failed", request_id=str(messages[0].request_id))
                return await self._refuse_broken(messages[0], exc)
        outcomes: list[Outcome] = []
        failed: list[tuple[BookingRequestMessage, str]] = []
        for message in messages:
            done, bad = await self._apply_isolating([message])
            outcomes += done
            failed += bad
        return outcomes, failed

    async def _refuse_broken(
        self, msg: BookingRequestMessage, exc: Exception
    ) -> tuple[list[Outcome], list[tuple[BookingRequestMessage, str]]]:
        """A request that cannot be applied still gets a definite answer (rejected), if the
        database lets us record it; it also goes to the dead-letter topic for a look."""
        reason = f"processing error: {type(exc).__name__}: {exc}"[:500]
        try:
            async with self.state.sessionmaker() as session, session.begin():
                inserted = await session.scalar(_INBOX_INSERT, _inbox_params(msg))
                outcome = (
                    await self._rejected(session, msg, "internal-error")
                    if inserted is not None
                    else await self._replayed(session, msg)
                )
                await _record(session, outcome)
        except Exception as again:
            if is_transient(again):
                raise
            log.exception("booking_request_unrecordable", request_id=str(msg.request_id))
            return [], [(msg, reason)]
        return [outcome], [(msg, reason)]

    async def _apply(self, messages: list[BookingRequestMessage]) -> list[Outcome]:
        claims: dict[uuid.UUID, ClaimState] = {}
        by_concert: dict[int, list[uuid.UUID]] = defaultdict(list)
        for msg in messages:
            by_concert[msg.concert_id].append(msg.request_id)
        for concert_id, ids in by_concert.items():
            claims |= await self.inventory.claim_states(concert_id, ids)
        outcomes = []
        async with self.state.sessionmaker() as session, session.begin():
            rows = await session.execute(
                text("SELECT id, status FROM concert WHERE id = ANY(:ids)"),
                {"ids": list(by_concert)},
            )
            on_sale = {r[0] for r in rows if r[1] == "on_sale"}
            for msg in messages:
                outcome = await self._apply_one(session, msg, claims[msg.request_id], on_sale)
                await _record(session, outcome)
                outcomes.append(outcome)
        return outcomes

    async def _apply_one(
        self,
        session: AsyncSession,
        msg: BookingRequestMessage,
        claim: ClaimState,
        on_sale: set[int],
    ) -> Outcome:
        if await session.scalar(_INBOX_INSERT, _inbox_params(msg)) is None:
            return await self._replayed(session, msg)
        if claim == "withdrawn":
            # The API told the fan 503 (no broker ack) and gave the claim back already.
            return Outcome(msg, "rejected", _settlement(msg, "d"), reason="withdrawn")
        if msg.concert_id not in on_sale:
            return await self._rejected(session, msg, "not-on-sale")
        req = _hold_request(msg)
        try:
            async with session.begin_nested():
                if req.general_admission:
                    claimed = await self._atomic.claim_stock(session, req, 0)
                else:
                    claimed = await self._atomic.claim_seats(session, req, 0)
                booking = await persist_hold(
                    session, self._ttl_state(msg.hold_ttl_s), req, claimed, "redis_claim"
                )
        except IntegrityError as exc:
            mapped = map_integrity_error(exc)
            if isinstance(mapped, IdempotentReplay):
                return await self._same_key(session, msg)
            if not isinstance(mapped, ProblemError):
                raise
            return await self._rejected(session, msg, mapped.slug)
        except ProblemError as exc:
            return await self._rejected(session, msg, exc.slug)
        return Outcome(msg, "held", _settlement(msg, "a"), booking_id=booking.id)

    def _ttl_state(self, hold_ttl_s: int) -> AppState:
        # persist_hold reads the hold TTL from the settings; the API that accepted the request
        # decided it, so the consumer uses the TTL carried by the message.
        state = self._ttl_states.get(hold_ttl_s)
        if state is None:
            settings = self.settings.model_copy(update={"hold_ttl_s": hold_ttl_s})
            state = self._ttl_states[hold_ttl_s] = replace(self.state, settings=settings)
        return state

    async def _rejected(
        self,
        session: AsyncSession,
        msg: BookingRequestMessage,
        reason: str,
        *,
        duplicate: bool = False,
    ) -> Outcome:
        """Refused by the database: give back what the database still has free.

        Seats taken in the database stay taken in Redis, and stock the database says is sold out
        is not returned: Redis had drifted from the database, and this moves it back. A replayed
        request's claim is a retry's fresh one, so its stock goes back whole."""
        if msg.seat_ids:
            free = (
                await session.scalars(
                    text("SELECT id FROM seat WHERE id = ANY(:ids) AND status = 'available'"),
                    {"ids": msg.seat_ids},
                )
            ).all()
            settlement = _settlement(msg, "r", seat_ids=sorted(free))
        elif reason == "sold-out" and not duplicate:
            settlement = _settlement(msg, "r", quantity=0)
        else:
            settlement = _settlement(msg, "r")
        return Outcome(msg, "rejected", settlement, reason=reason, duplicate=duplicate)

    async def _same_key(self, session: AsyncSession, msg: BookingRequestMessage) -> Outcome:
        assert msg.idempotency_key is not None
        existing = await repository.find_by_idempotency_key(
            session, user_id=msg.user_id, key=msg.idempotency_key
        )
        if existing is not None and existing.request_hash == msg.request_hash:
            return Outcome(msg, "held", _settlement(msg, "a"), booking_id=existing.id)
        return await self._rejected(session, msg, "idempotency-key-reused")

    async def _replayed(self, session: AsyncSession, msg: BookingRequestMessage) -> Outcome:
        """A redelivery (or a retried request): same outcome; a claim Redis still holds for it
        (a crash before the settlement, or an idempotent retry) is settled now."""
        row = (await session.execute(_INBOX_READ, {"rid": msg.request_id})).one()
        outcome, booking_id, result, booking_status = row
        if outcome == "held":
            action: SettleAction = "a" if booking_status in ACTIVE else "d"
            return Outcome(
                msg, "held", _settlement(msg, action), booking_id=booking_id, duplicate=True
            )
        reason = result.get("reason") or "rejected"
        return await self._rejected(session, msg, reason, duplicate=True)

    # --- after the commit -----------------------------------------------------------------

    async def _settle(self, outcomes: list[Outcome]) -> None:
        by_concert: dict[int, list[Settlement]] = defaultdict(list)
        for o in outcomes:
            by_concert[o.message.concert_id].append(o.settlement)
        for concert_id, settlements in by_concert.items():
            await self.inventory.settle(concert_id, settlements)
        await self.inventory.save_statuses(
            (
                RequestStatus(
                    o.message.request_id,
                    o.message.user_id,
                    o.message.concert_id,
                    o.status,
                    o.booking_id,
                    o.reason,
                )
                for o in outcomes
            ),
            self.settings.booking_request_ttl_s,
        )

    async def _publish(self, outcomes: list[Outcome], letters: list[DeadLetter]) -> None:
        assert self.producer is not None
        now = datetime.now(UTC)
        futures: list[asyncio.Future[Any]] = []
        for o in outcomes:
            ack = await self.producer.send(
                RESULTS_TOPIC, o.result(now).model_dump_json().encode(), key=o.message.key()
            )
            futures.append(time_ack(ack, RESULTS_TOPIC))
        for letter in letters:
            r = letter.record
            headers = [
                ("error", letter.reason.encode()),
                ("error-kind", letter.kind.encode()),
                ("source-topic", r.topic.encode()),
                ("source-partition", str(r.partition).encode()),
                ("source-offset", str(r.offset).encode()),
            ]
            ack = await self.producer.send(DLQ_TOPIC, r.value, key=r.key, headers=headers)
            futures.append(time_ack(ack, DLQ_TOPIC))
        await asyncio.gather(*futures)

    def _measure(
        self,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        letters: list[DeadLetter],
    ) -> None:
        now_ms = time.time() * 1000
        for records in batch.values():
            for record in records:
                # CreateTime, stamped by the API's producer just before the broker's ack.
                latency_ms = max(0.0, now_ms - record.timestamp)
                REQUEST_LATENCY.observe(latency_ms / 1000)
                self._window.latencies_ms.append(latency_ms)
                self._window.messages += 1
        self._window.errors += len(letters)

    def _count(self, outcomes: list[Outcome], letters: list[DeadLetter]) -> None:
        for o in outcomes:
            if o.duplicate:
                PROCESSED.labels("duplicate").inc()
                continue
            PROCESSED.labels(o.status).inc()
            if o.status == "rejected":
                REJECTED.labels(o.reason or "unknown").inc()
        for letter in letters:
            DEAD_LETTERED.labels(letter.kind).inc()
            log.warning(
                "booking_request_dead_lettered",
                kind=letter.kind,
                reason=letter.reason,
                partition=letter.record.partition,
                offset=letter.record.offset,
            )


def _hold_request(msg: BookingRequestMessage) -> HoldRequest:
    return HoldRequest(
        user_id=msg.user_id,
        concert_id=msg.concert_id,
        seat_ids=tuple(sorted(msg.seat_ids)),
        quantity=msg.quantity,
        max_per_user=msg.max_per_user,
        idempotency_key=msg.idempotency_key,
        request_hash=msg.request_hash,
    )


def _inbox_params(msg: BookingRequestMessage) -> dict[str, Any]:
    return {"rid": msg.request_id, "uid": msg.user_id, "cid": msg.concert_id}


async def _record(session: AsyncSession, outcome: Outcome) -> None:
    if outcome.duplicate:
        return
    result = {"status": outcome.status, "booking_id": outcome.booking_id, "reason": outcome.reason}
    await session.execute(
        _INBOX_UPDATE,
        {
            "rid": outcome.message.request_id,
            "outcome": outcome.status,
            "bid": outcome.booking_id,
            "result": json.dumps(result),
        },
    )


def _reason(exc: ValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {"msg": str(exc)}
    where = ".".join(str(p) for p in first.get("loc", ())) or "message"
    return f"{where}: {first['msg']}"[:500]


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
