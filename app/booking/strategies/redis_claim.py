"""F `redis_claim`: a Lua script claims the seats (or decrements the stock) in Redis; the claim is
persisted to PostgreSQL asynchronously through Kafka by the booking consumer.

The API answers 409 straight from Redis when the claim fails (no database work), and 202 only
after the broker acknowledged the request (acks=all), so an accepted request is never lost. The
consumer applies it with the same database constraints as every other strategy, exactly once
(inbox keyed by request id), and gives the claim back if the database refuses it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import ClassVar

import structlog
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from app.booking.errors import InvalidSeats, NoGeneralAdmission, SeatTaken, SoldOut
from app.booking.inventory import ClaimResult, Inventory, InventoryUnavailable, RequestStatus
from app.booking.messages import REQUESTS_TOPIC, BookingRequestMessage
from app.booking.models import Booking
from app.booking.strategies.base import HoldRequest, PendingHold
from app.core.metrics import KAFKA_PRODUCE_LATENCY
from app.core.problems import NotFound, ServiceUnavailable
from app.core.state import AppState

log = structlog.get_logger(__name__)

# Request ids of requests sent with an Idempotency-Key are derived from it, so a retry maps to the
# same request (and the same Redis claim and inbox row) instead of booking twice.
_REQUEST_NAMESPACE = uuid.UUID("6f1c5e0a-4b7e-4d1c-9a55-0c7a8f3b2d19")


class BookingQueueUnavailable(ServiceUnavailable):
    slug = "booking-queue-unavailable"
    title = "Booking requests cannot be accepted right now; nothing was booked"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


class BookingRequestNotFound(NotFound):
    slug = "booking-request-not-found"
    title = "Booking request not found"


def request_id_for(req: HoldRequest) -> uuid.UUID:
    if req.idempotency_key is None:
        return uuid.uuid4()
    return uuid.uuid5(_REQUEST_NAMESPACE, f"{req.user_id}:{req.idempotency_key}:{req.request_hash}")


class RedisClaimStrategy:
    name: ClassVar[str] = "redis_claim"
    # A failed Redis claim must cost no database work; expired F holds come back through the
    # sweeper within sweeper_interval_s.
    lazy_expiry: ClassVar[bool] = False

    async def hold(self, state: AppState, req: HoldRequest) -> PendingHold:
        producer = state.kafka.producer
        if producer is None:  # checked first: no claim to undo
            raise BookingQueueUnavailable("The booking queue is not connected.")
        inventory = Inventory(state.redis, state.keys)
        request_id = request_id_for(req)
        claim = await self._claim(state, inventory, req, request_id)
        message = BookingRequestMessage.of(
            req,
            request_id=request_id,
            hold_ttl_s=state.settings.hold_ttl_s,
            inventory_version=claim.version,
            created_at=datetime.now(UTC),
        )
        status = RequestStatus(request_id, req.user_id, req.concert_id, "pending")
        try:
            await inventory.save_statuses([status], state.settings.booking_request_ttl_s)
            # A duplicate claim (an idempotent retry) is sent again: the first send may have
            # failed, and the consumer's inbox drops the extra copy.
            started = time.perf_counter()
            await asyncio.wait_for(
                producer.send_and_wait(
                    REQUESTS_TOPIC, message.model_dump_json().encode(), key=message.key()
                ),
                timeout=state.settings.booking_produce_timeout_s,
            )
            KAFKA_PRODUCE_LATENCY.labels(REQUESTS_TOPIC).observe(time.perf_counter() - started)
        except Exception as exc:
            log.warning(
                "booking_request_not_acknowledged", request_id=str(request_id), error=repr(exc)
            )
            # The duplicate's claim belongs to the first attempt, which may still succeed.
            if claim.status == "claimed":
                await self._withdraw(inventory, req, request_id)
            if isinstance(exc, KafkaError | OSError | TimeoutError):
                raise BookingQueueUnavailable(
                    "The booking queue did not acknowledge the request; nothing was booked."
                ) from exc
            raise
        return PendingHold(request_id, req.concert_id)

    async def _withdraw(
        self, inventory: Inventory, req: HoldRequest, request_id: uuid.UUID
    ) -> None:
        try:
            # An idempotent retry resends the same request, which must then apply: no tombstone.
            await inventory.withdraw(
                req.concert_id, request_id, tombstone=req.idempotency_key is None
            )
            await inventory.delete_status(request_id)
        except RedisError as exc:  # Redis is down too: reconcile shows the claim by its age
            log.error("redis_claim_withdraw_failed", request_id=str(request_id), error=repr(exc))

    async def _claim(
        self, state: AppState, inventory: Inventory, req: HoldRequest, request_id: uuid.UUID
    ) -> ClaimResult:
        timeout_s = state.settings.redis_claim_load_timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            result = await inventory.claim(req.concert_id, request_id, req.seat_ids, req.quantity)
            if result.status in ("claimed", "duplicate"):
                return result
            if result.status == "taken":
                taken = list(result.seat_ids)
                raise SeatTaken(f"Seats {taken} are already taken.", seat_ids=taken)
            if result.status == "sold_out":
                raise SoldOut(f"Only {result.stock} tickets left.")
            if result.status == "no_ga":
                raise NoGeneralAdmission()
            if result.status == "foreign":
                raise InvalidSeats(f"Seats {sorted(result.seat_ids)} are not in this concert.")
            if time.monotonic() >= deadline:
                raise BookingQueueUnavailable("The seat inventory is being rebuilt; retry.")
            if result.status == "not_loaded":
                try:
                    await inventory.ensure_loaded(state.engine, req.concert_id, timeout_s=timeout_s)
                except InventoryUnavailable as exc:
                    raise BookingQueueUnavailable(str(exc)) from exc
            else:  # busy: a repair holds new claims back for a moment
                await asyncio.sleep(0.05)

    async def released(self, state: AppState, booking: Booking, seat_ids: list[int]) -> None:
        # The database release is committed; a failure here only leaves the seats looking taken
        # in Redis (never oversold) until `ticket-rush reconcile --repair`.
        try:
            await Inventory(state.redis, state.keys).give_back(
                booking.concert_id,
                general_admission=booking.general_admission,
                seat_ids=seat_ids,
                quantity=booking.quantity,
            )
        except RedisError as exc:
            log.warning("redis_claim_give_back_failed", booking_id=booking.id, error=repr(exc))
