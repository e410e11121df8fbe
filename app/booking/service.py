"""Bookings: hold (via a strategy), read, cancel, pay → confirm, and expiry of unpaid holds."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.booking import repository
from app.booking.errors import (
    BookingNotFound,
    HoldExpired,
    IdempotencyKeyReused,
    InvalidBookingState,
    NotOnSale,
    SeatTaken,
    SoldOut,
)
from app.booking.inventory import Inventory
from app.booking.models import Booking, BookingInbox, BookingStatus, GaInventory, Payment, Ticket
from app.booking.schemas import (
    BookingCreate,
    BookingRead,
    BookingRequestRead,
    GeneralAdmissionSet,
    TicketRead,
)
from app.booking.strategies.base import HoldRequest, IdempotentReplay, PendingHold
from app.booking.strategies.redis_claim import BookingRequestNotFound
from app.catalog.errors import ConcertNotFound
from app.catalog.seat.service import invalidate_availability
from app.core import ratelimit
from app.core.metrics import BOOKING_LATENCY, BOOKING_OUTCOMES, HOLDS_EXPIRED
from app.core.pagination import decode_cursor, encode_cursor
from app.core.problems import ProblemError
from app.core.state import AppState
from app.payments.errors import PaymentConflict, PaymentDeclined, PaymentError, PaymentNotFound

log = structlog.get_logger(__name__)


_ON_SALE_TTL_S = 1.0
_on_sale: dict[int, tuple[float, int]] = {}


async def _on_sale_limit(state: AppState, concert_id: int) -> int:
    """The per-fan limit of an on-sale concert (404/409 otherwise). An on-sale answer is reused
    for a second in this process: every booking request asks, and a concert leaving sale may
    take that long to be noticed here (the sale's close also revokes admissions)."""
    cached = _on_sale.get(concert_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    async with state.sessionmaker() as session:
        row = (
            await session.execute(
                text("SELECT status, max_tickets_per_user FROM concert WHERE id = :c"),
                {"c": concert_id},
            )
        ).first()
    if row is None:
        raise ConcertNotFound(f"No concert with id {concert_id}.")
    if row[0] != "on_sale":
        raise NotOnSale(f"Concert {concert_id} is {row[0]}.")
    _on_sale[concert_id] = (time.monotonic() + _ON_SALE_TTL_S, row[1])
    return int(row[1])


_LAZY_EXPIRY_INTERVAL_S = 0.25
_last_lazy_expiry: dict[int, float] = {}


def _lazy_expiry_due(concert_id: int) -> bool:
    now = time.monotonic()
    if now - _last_lazy_expiry.get(concert_id, 0.0) < _LAZY_EXPIRY_INTERVAL_S:
        return False
    _last_lazy_expiry[concert_id] = now
    return True


def request_hash(concert_id: int, body: BookingCreate) -> str:
    payload = {
        "concert_id": concert_id,
        "seat_ids": sorted(body.seat_ids or []),
        "quantity": body.quantity,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


async def to_read(session: AsyncSession, booking: Booking) -> BookingRead:
    seat_ids = (
        [] if booking.general_admission else await repository.seat_ids_of(session, booking.id)
    )
    tickets = (
        await repository.tickets_of(session, booking.id) if booking.status == "confirmed" else []
    )
    return booking_read(booking, seat_ids=seat_ids, tickets=tickets)


def booking_read(booking: Booking, *, seat_ids: list[int], tickets: list[Ticket]) -> BookingRead:
    return BookingRead(
        id=booking.id,
        concert_id=booking.concert_id,
        status=booking.status,
        general_admission=booking.general_admission,
        seat_ids=seat_ids,
        quantity=booking.quantity,
        amount_minor=booking.amount_minor,
        currency=booking.currency,
        strategy=booking.strategy,
        hold_expires_at=booking.hold_expires_at,
        created_at=booking.created_at,
        tickets=[TicketRead.model_validate(t) for t in tickets],
    )


async def _replay(state: AppState, *, user_id: int, key: str, digest: str) -> BookingRead | None:
    async with state.sessionmaker() as session:
        existing = await repository.find_by_idempotency_key(session, user_id=user_id, key=key)
        if existing is None:
            return None
        if existing.request_hash != digest:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used for a different booking request."
            )
        return await to_read(session, existing)


async def limit_holds(state: AppState, *, user_id: int, ip: str) -> None:
    """Count one hold attempt of this fan (and IP, if limited); 429 above the limits."""
    s = state.settings
    limits = [
        (
            state.keys("rl", "hold", "account", user_id),
            s.booking_limit_per_account,
            s.booking_limit_window_s,
        )
    ]
    if s.booking_limit_per_ip:
        limits.append(
            (state.keys("rl", "hold", "ip", ip), s.booking_limit_per_ip, s.booking_limit_window_s)
        )
    await ratelimit.enforce(state.redis, limits)


async def hold(
    state: AppState,
    *,
    user_id: int,
    concert_id: int,
    body: BookingCreate,
    idempotency_key: str | None,
    default_strategy: str | None = None,
) -> tuple[BookingRead | BookingRequestRead, bool]:
    """Hold seats or general-admission tickets. Returns (booking or accepted request, replayed).
    The strategy is the request's, else `default_strategy`, else the configured one."""
    digest = request_hash(concert_id, body)
    if idempotency_key:
        replay = await _replay(state, user_id=user_id, key=idempotency_key, digest=digest)
        if replay is not None:
            return replay, True
    max_per_user = await _on_sale_limit(state, concert_id)
    name = body.strategy or default_strategy or state.settings.booking_strategy
    strategy = state.strategies[name]
    req = HoldRequest(
        user_id=user_id,
        concert_id=concert_id,
        seat_ids=tuple(sorted(body.seat_ids or ())),
        quantity=len(body.seat_ids) if body.seat_ids else (body.quantity or 0),
        max_per_user=max_per_user,
        idempotency_key=idempotency_key,
        request_hash=digest,
    )
    kind = "general_admission" if req.general_admission else "seats"
    started = time.perf_counter()
    try:
        try:
            booking = await strategy.hold(state, req)
        except (SeatTaken, SoldOut):
            # Lazy expiry: stale holds on exactly these seats (or this stock) are released
            # and the claim is tried once more. Throttled per concert: in a hot-seat burst
            # hundreds of losers would otherwise each open a transaction for nothing.
            if (
                not strategy.lazy_expiry
                or not _lazy_expiry_due(concert_id)
                or not await expire_due(
                    state, concert_id=concert_id, seat_ids=req.seat_ids, path="lazy"
                )
            ):
                raise
            booking = await strategy.hold(state, req)
    except IdempotentReplay:
        assert idempotency_key is not None
        replay = await _replay(state, user_id=user_id, key=idempotency_key, digest=digest)
        assert replay is not None
        return replay, True
    except ProblemError as exc:
        BOOKING_OUTCOMES.labels(name, kind, exc.slug).inc()
        BOOKING_LATENCY.labels(name).observe(time.perf_counter() - started)
        if idempotency_key and exc.status == 409:
            # A concurrent duplicate may have won the seat for this very request.
            replay = await _replay(state, user_id=user_id, key=idempotency_key, digest=digest)
            if replay is not None:
                return replay, True
        raise
    BOOKING_LATENCY.labels(name).observe(time.perf_counter() - started)
    if isinstance(booking, PendingHold):
        BOOKING_OUTCOMES.labels(name, kind, "accepted").inc()
        return BookingRequestRead(
            request_id=booking.request_id, concert_id=concert_id, status="pending"
        ), False
    BOOKING_OUTCOMES.labels(name, kind, "held").inc()
    await invalidate_availability(state.cache, concert_id)
    # Built from what the strategy returned, without another pool checkout: once the hold is
    # committed, nothing may turn the answer into an error (the fan would retry and lose it).
    return booking_read(booking, seat_ids=list(req.seat_ids), tickets=[]), False


async def get_booking_request(
    state: AppState, *, request_id: uuid.UUID, user_id: int
) -> BookingRequestRead:
    """The outcome of an accepted asynchronous hold (strategy redis_claim), for its owner only.

    Polls are answered from the Redis status record; the inbox table is the authority when the
    record still says pending (or is gone, e.g. after a Redis loss)."""
    status = await Inventory(state.redis, state.keys).load_status(request_id)
    if status is not None and status.user_id == user_id and status.status != "pending":
        return BookingRequestRead(
            request_id=request_id,
            concert_id=status.concert_id,
            status=status.status,
            booking_id=status.booking_id,
            reason=status.reason,
        )
    async with state.sessionmaker() as session:
        row = await session.get(BookingInbox, request_id)
    if row is not None and row.outcome in ("held", "rejected"):
        if row.user_id != user_id:
            raise BookingRequestNotFound(f"No booking request with id {request_id}.")
        return BookingRequestRead(
            request_id=request_id,
            concert_id=row.concert_id,
            status="held" if row.outcome == "held" else "rejected",
            booking_id=row.booking_id,
            reason=row.result.get("reason"),
        )
    if status is None or status.user_id != user_id:
        # Another fan's request is reported as missing, like another fan's booking.
        raise BookingRequestNotFound(f"No booking request with id {request_id}.")
    return BookingRequestRead(request_id=request_id, concert_id=status.concert_id, status="pending")


async def _owned(session: AsyncSession, *, booking_id: int, user_id: int, admin: bool) -> Booking:
    booking = await repository.lock_booking(session, booking_id)
    # Another fan's booking is reported as missing: ids must not reveal other fans' purchases.
    if booking is None or (booking.user_id != user_id and not admin):
        raise BookingNotFound(f"No booking with id {booking_id}.")
    return booking


async def _close(
    state: AppState, session: AsyncSession, booking: Booking, status: BookingStatus
) -> list[int]:
    seat_ids = await repository.release_inventory(session, booking)
    booking.status = status
    booking.closed_at = datetime.now(UTC)
    return seat_ids


async def _after_release(state: AppState, released: Sequence[tuple[Booking, list[int]]]) -> None:
    for booking, seat_ids in released:
        await state.strategies[booking.strategy].released(state, booking, seat_ids)
    for concert_id in {b.concert_id for b, _ in released}:
        await invalidate_availability(state.cache, concert_id)


def _is_due(booking: Booking, state: AppState, now: datetime) -> bool:
    if booking.status != BookingStatus.held or booking.hold_expires_at >= now:
        return False
    grace = state.settings.payment_grace_s if booking.payment_started_at else 0
    return (now - booking.hold_expires_at).total_seconds() > grace


async def get_booking(
    state: AppState, *, booking_id: int, user_id: int, admin: bool
) -> BookingRead:
    """Read a booking; an expired hold is released on the way (lazy expiry)."""
    released: list[tuple[Booking, list[int]]] = []
    async with state.sessionmaker() as session, session.begin():
        booking = await _owned(session, booking_id=booking_id, user_id=user_id, admin=admin)
        if _is_due(booking, state, datetime.now(UTC)):
            released.append((booking, await _close(state, session, booking, BookingStatus.expired)))
            HOLDS_EXPIRED.labels("lazy").inc()
        read = await to_read(session, booking)
    await _after_release(state, released)
    return read


async def cancel(state: AppState, *, booking_id: int, user_id: int, admin: bool) -> BookingRead:
    """Cancel a held booking; its seats or stock return at once."""
    async with state.sessionmaker() as session, session.begin():
        booking = await _owned(session, booking_id=booking_id, user_id=user_id, admin=admin)
        if booking.status in (BookingStatus.cancelled, BookingStatus.expired):
            return await to_read(session, booking)
        if booking.status != BookingStatus.held or booking.payment_started_at is not None:
            raise InvalidBookingState(
                f"A {booking.status} booking with a payment cannot be cancelled."
            )
        seat_ids = await _close(state, session, booking, BookingStatus.cancelled)
        read = await to_read(session, booking)
    await _after_release(state, [(booking, seat_ids)])
    return read


async def expire_due(
    state: AppState,
    *,
    concert_id: int | None = None,
    seat_ids: Sequence[int] = (),
    limit: int = 500,
    path: str = "sweeper",
) -> int:
    """Release held bookings past their expiry; safe to run in many processes at once."""
    async with state.sessionmaker() as session, session.begin():
        due = await repository.due_holds(
            session,
            now=datetime.now(UTC),
            grace_s=state.settings.payment_grace_s,
            limit=limit,
            concert_id=concert_id,
            seat_ids=seat_ids,
        )
        released = [(b, await _close(state, session, b, BookingStatus.expired)) for b in due]
    if released:
        HOLDS_EXPIRED.labels(path).inc(len(released))
        await _after_release(state, released)
    return len(released)


async def list_my_bookings(
    state: AppState, *, user_id: int, cursor: str | None, limit: int
) -> tuple[list[BookingRead], str | None]:
    async with state.sessionmaker() as session:
        stmt = select(Booking).where(Booking.user_id == user_id)
        if cursor:
            (before,) = decode_cursor(cursor, 1)
            stmt = stmt.where(Booking.id < int(before))
        rows = list(
            (await session.scalars(stmt.order_by(Booking.id.desc()).limit(limit + 1))).all()
        )
        items = [await to_read(session, b) for b in rows[:limit]]
    return items, encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None


async def set_general_admission(
    state: AppState, *, concert_id: int, data: GeneralAdmissionSet
) -> GaInventory:
    """Create or resize a concert's general-admission stock; never below what is already sold."""
    async with state.sessionmaker() as session, session.begin():
        if (
            await session.scalar(text("SELECT 1 FROM concert WHERE id = :c"), {"c": concert_id})
            is None
        ):
            raise ConcertNotFound(f"No concert with id {concert_id}.")
        ga = await session.get(GaInventory, concert_id, with_for_update=True)
        if ga is None:
            ga = GaInventory(
                concert_id=concert_id,
                total=data.quantity,
                stock=data.quantity,
                price_minor=data.price,
                currency=data.currency,
            )
            session.add(ga)
        else:
            taken = ga.total - ga.stock
            if data.quantity < taken:
                raise InvalidBookingState(f"{taken} tickets are already held or sold.")
            ga.total, ga.stock = data.quantity, data.quantity - taken
            ga.price_minor, ga.currency = data.price, data.currency
            ga.version += 1
    await invalidate_availability(state.cache, concert_id)
    return ga


async def get_general_admission(state: AppState, *, concert_id: int) -> GaInventory:
    async with state.sessionmaker() as session:
        ga = await session.get(GaInventory, concert_id)
    if ga is None:
        raise ConcertNotFound(f"Concert {concert_id} has no general admission.")
    return ga


async def refund_abandoned_payments(state: AppState, *, limit: int = 100) -> int:
    """Refund what was charged under payments left pending on released holds; how many closed.

    A charge can land after `pay` timed out; if the fan never asks again (which replays the key
    and confirms), the hold expires after its grace with the money taken. The provider's refund
    is idempotent, so every API process may run this at once. Found by `make chaos`."""
    async with state.sessionmaker() as session:
        pending = await repository.abandoned_payments(session, limit=limit)
    settled = 0
    for payment_id, key in pending:
        try:
            await state.payments.refund(idempotency_key=key)
            status = "refunded"
        except (PaymentNotFound, PaymentConflict):
            status = "declined"  # nothing was charged under the key, or the charge was declined
        except PaymentError as exc:  # the provider is down: the next sweep tries again
            log.warning("abandoned_payment_refund_failed", payment_id=payment_id, error=repr(exc))
            break
        async with state.sessionmaker() as session, session.begin():
            await repository.settle_payment(session, payment_id=payment_id, status=status)
        settled += 1
    return settled


async def sweep_forever(state: AppState) -> None:
    """Background expiry of unpaid holds in every API process (SKIP LOCKED keeps them apart),
    then refunds of charges that landed on holds released meanwhile."""
    while True:
        try:
            while await expire_due(state) == 500:
                pass
            await refund_abandoned_payments(state)
        except Exception:
            log.exception("hold_sweeper_failed")
        await asyncio.sleep(state.settings.sweeper_interval_s)


async def pay(state: AppState, *, booking_id: int, user_id: int) -> BookingRead:
    """Charge the booking once (whatever the retries) and confirm it with tickets.

    The charge happens outside any transaction; the booking is locked before and after it.
    A charge that lands after the hold was released is refunded."""
    now = datetime.now(UTC)
    async with state.sessionmaker() as session, session.begin():
        booking = await _owned(session, booking_id=booking_id, user_id=user_id, admin=False)
        if booking.status == BookingStatus.confirmed:
            return await to_read(session, booking)
        if booking.status != BookingStatus.held:
            raise HoldExpired(f"Booking {booking_id} is {booking.status}.")
        if booking.payment_started_at is None and booking.hold_expires_at < now:
            raise HoldExpired("The hold expired before payment started.")
        payment = await repository.open_payment(session, booking)
        payment.attempts += 1
        booking.payment_started_at = booking.payment_started_at or now
        key, amount, currency = payment.provider_key, payment.amount_minor, payment.currency
        payment_id = payment.id
    try:
        charge = await state.payments.charge(
            idempotency_key=key, amount_minor=amount, currency=currency
        )
    except PaymentDeclined:
        async with state.sessionmaker() as session, session.begin():
            declined = await session.get(Payment, payment_id, with_for_update=True)
            assert declined is not None
            declined.status = "declined"
            booking = await _owned(session, booking_id=booking_id, user_id=user_id, admin=False)
            # The fan may try again (a new attempt, a new provider key) while the hold lasts.
            booking.payment_started_at = None
        raise
    refund = False
    async with state.sessionmaker() as session, session.begin():
        booking = await _owned(session, booking_id=booking_id, user_id=user_id, admin=False)
        paid = await session.get(Payment, payment_id, with_for_update=True)
        assert paid is not None
        paid.charge_id = charge.charge_id
        if booking.status == BookingStatus.held:
            paid.status = "succeeded"
            await _confirm(session, booking)
            read = await to_read(session, booking)
        elif booking.status == BookingStatus.confirmed:
            read = await to_read(session, booking)
        else:
            paid.status = "refunded"
            refund = True
    if refund:
        await state.payments.refund(idempotency_key=key)
        raise HoldExpired("The hold was released while paying; the charge was refunded.")
    await invalidate_availability(state.cache, booking.concert_id)
    return read


async def _confirm(session: AsyncSession, booking: Booking) -> None:
    seat_ids = await repository.seat_ids_of(session, booking.id)
    if seat_ids:
        await session.execute(
            text("UPDATE seat SET status = 'sold', version = version + 1 WHERE id = ANY(:ids)"),
            {"ids": seat_ids},
        )
    units: list[int | None] = list(seat_ids) or [None] * booking.quantity
    session.add_all(
        Ticket(
            booking_id=booking.id,
            concert_id=booking.concert_id,
            seat_id=s,
            code=secrets.token_hex(8).upper(),
        )
        for s in units
    )
    booking.status = BookingStatus.confirmed
    booking.confirmed_at = datetime.now(UTC)
    await session.flush()
