"""All SQL of the booking domain that the strategies share."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.booking.models import Booking, BookingSeat, BookingStatus, Payment, Ticket

_QUOTA = text(
    """
    INSERT INTO ticket_quota (user_id, concert_id, used, max_allowed)
    VALUES (:user_id, :concert_id, :n, :max_allowed)
    ON CONFLICT (user_id, concert_id) DO UPDATE SET used = ticket_quota.used + EXCLUDED.used
    """
)


def constraint_of(exc: DBAPIError) -> str | None:
    """Name of the violated constraint (asyncpg puts it on the original exception)."""
    cause = getattr(exc.orig, "__cause__", None)
    return getattr(cause, "constraint_name", None)


def sqlstate_of(exc: DBAPIError) -> str | None:
    cause = getattr(exc.orig, "__cause__", None)
    return getattr(cause, "sqlstate", None)


def is_violation(exc: IntegrityError, constraint: str) -> bool:
    return constraint_of(exc) == constraint


async def take_quota(
    session: AsyncSession, *, user_id: int, concert_id: int, n: int, max_allowed: int
) -> None:
    """Count `n` tickets against the fan's limit; the CHECK rejects going over it atomically."""
    await session.execute(
        _QUOTA, {"user_id": user_id, "concert_id": concert_id, "n": n, "max_allowed": max_allowed}
    )


async def return_quota(session: AsyncSession, *, user_id: int, concert_id: int, n: int) -> None:
    await session.execute(
        text(
            "UPDATE ticket_quota SET used = used - :n"
            " WHERE user_id = :user_id AND concert_id = :concert_id"
        ),
        {"n": n, "user_id": user_id, "concert_id": concert_id},
    )


async def find_by_idempotency_key(
    session: AsyncSession, *, user_id: int, key: str
) -> Booking | None:
    booking: Booking | None = await session.scalar(
        select(Booking).where(Booking.user_id == user_id, Booking.idempotency_key == key)
    )
    return booking


async def lock_booking(session: AsyncSession, booking_id: int) -> Booking | None:
    booking: Booking | None = await session.scalar(
        select(Booking).where(Booking.id == booking_id).with_for_update()
    )
    return booking


async def seat_ids_of(session: AsyncSession, booking_id: int) -> list[int]:
    rows = await session.scalars(
        select(BookingSeat.seat_id)
        .where(BookingSeat.booking_id == booking_id)
        .order_by(BookingSeat.seat_id)
    )
    return list(rows.all())


async def tickets_of(session: AsyncSession, booking_id: int) -> list[Ticket]:
    rows = await session.scalars(
        select(Ticket).where(Ticket.booking_id == booking_id).order_by(Ticket.id)
    )
    return list(rows.all())


async def release_inventory(session: AsyncSession, booking: Booking) -> list[int]:
    """Give a held booking's seats or stock back; returns the released seat ids."""
    released = list(
        (
            await session.scalars(
                update(BookingSeat)
                .where(BookingSeat.booking_id == booking.id, BookingSeat.active)
                .values(active=False)
                .returning(BookingSeat.seat_id)
            )
        ).all()
    )
    if booking.general_admission:
        await session.execute(
            text(
                "UPDATE ga_inventory SET stock = stock + :n, version = version + 1"
                " WHERE concert_id = :concert_id"
            ),
            {"n": booking.quantity, "concert_id": booking.concert_id},
        )
    elif released:
        await session.execute(
            text(
                "UPDATE seat SET status = 'available', version = version + 1"
                " WHERE id = ANY(:ids) AND status = 'held'"
            ),
            {"ids": released},
        )
    await return_quota(
        session, user_id=booking.user_id, concert_id=booking.concert_id, n=booking.quantity
    )
    return released


async def due_holds(
    session: AsyncSession,
    *,
    now: datetime,
    grace_s: int,
    limit: int,
    concert_id: int | None = None,
    seat_ids: Sequence[int] = (),
) -> Sequence[Booking]:
    """Held bookings past their expiry (payments in flight get a grace period), locked with
    SKIP LOCKED so several sweepers never fight over one row."""
    stmt = (
        select(Booking)
        .where(
            Booking.status == BookingStatus.held,
            Booking.hold_expires_at < now,
            text(
                "(payment_started_at IS NULL"
                " OR hold_expires_at < :now - make_interval(secs => :grace))"
            ).bindparams(now=now, grace=grace_s),
        )
        .order_by(Booking.hold_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if concert_id is not None:
        stmt = stmt.where(Booking.concert_id == concert_id)
    if seat_ids:
        stmt = stmt.where(
            Booking.id.in_(
                select(BookingSeat.booking_id).where(
                    BookingSeat.seat_id.in_(seat_ids), BookingSeat.active
                )
            )
        )
    return (await session.scalars(stmt)).all()


async def open_payment(session: AsyncSession, booking: Booking) -> Payment:
    """The pending payment of a booking, or a new one with the next provider key.

    A pending payment keeps its key, so retrying after a timeout replays the same charge."""
    payments = (
        await session.scalars(
            select(Payment).where(Payment.booking_id == booking.id).order_by(Payment.id)
        )
    ).all()
    for payment in payments:
        if payment.status in ("pending", "succeeded"):
            return payment
    payment = Payment(
        booking_id=booking.id,
        # The random part keeps keys unique across databases that reuse booking ids (a restored
        # backup, staging and production on one provider account): a provider replays a known key.
        provider_key=f"booking-{booking.id}-{len(payments) + 1}-{secrets.token_hex(8)}",
        amount_minor=booking.amount_minor,
        currency=booking.currency,
        status="pending",
    )
    session.add(payment)
    await session.flush()
    return payment


async def abandoned_payments(session: AsyncSession, *, limit: int) -> list[tuple[int, str]]:
    """(id, provider key) of payments still pending on bookings that were released."""
    rows = await session.execute(
        select(Payment.id, Payment.provider_key)
        .join(Booking, Booking.id == Payment.booking_id)
        .where(
            Payment.status == "pending",
            Booking.status.in_((BookingStatus.expired, BookingStatus.cancelled)),
        )
        .order_by(Payment.id)
        .limit(limit)
    )
    return [(payment_id, key) for payment_id, key in rows]


async def settle_payment(session: AsyncSession, *, payment_id: int, status: str) -> None:
    """Close a pending payment (a concurrent `pay` that settled it first wins)."""
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == "pending")
        .values(status=status)
    )
