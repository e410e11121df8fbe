"""The `BookingStrategy` protocol and the transaction skeleton the database strategies share.

A strategy only decides how contention is handled; whatever it does, the database constraints
(partial unique index on active seats, CHECK on stock and quotas) make double-selling impossible.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.booking import repository
from app.booking.errors import (
    BookingContention,
    InvalidSeats,
    NoGeneralAdmission,
    SeatTaken,
    SoldOut,
    TicketLimitExceeded,
)
from app.booking.models import Booking, BookingSeat, BookingStatus
from app.core.state import AppState

LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired
SERIALIZATION_FAILURE = "40001"
DEADLOCK = "40P01"


@dataclass(frozen=True, slots=True)
class HoldRequest:
    user_id: int
    concert_id: int
    seat_ids: tuple[int, ...]  # sorted; empty for general admission
    quantity: int
    max_per_user: int
    idempotency_key: str | None
    request_hash: str | None

    @property
    def general_admission(self) -> bool:
        return not self.seat_ids


@dataclass(frozen=True, slots=True)
class Claimed:
    seat_ids: tuple[int, ...]
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class PendingHold:
    """An accepted hold that is persisted asynchronously (strategy redis_claim, via Kafka)."""

    request_id: uuid.UUID
    concert_id: int


class IdempotentReplay(Exception):
    """A concurrent request with the same Idempotency-Key committed first."""


class RetryClaim(Exception):
    """The optimistic check failed; run the transaction again."""


class BookingStrategy(Protocol):
    name: ClassVar[str]
    # Whether a lost claim may run a lazy-expiry pass over the database and try again.
    lazy_expiry: ClassVar[bool]

    async def hold(self, state: AppState, req: HoldRequest) -> Booking | PendingHold:
        """Claim the seats or stock and create a held booking, or raise a 409 problem."""
        ...

    async def released(self, state: AppState, booking: Booking, seat_ids: list[int]) -> None:
        """Called after a hold was released (expired/cancelled) and committed."""
        ...


def map_integrity_error(exc: IntegrityError) -> Exception:
    name = repository.constraint_of(exc)
    if name == "uq_booking_seat_active_seat":
        return SeatTaken("A seat was taken by a concurrent booking (caught by the database).")
    if name == "ck_ga_inventory_stock":
        return SoldOut("Not enough general-admission tickets left (caught by the database).")
    if name == "ck_ticket_quota_used":
        return TicketLimitExceeded("This would exceed your ticket limit for the concert.")
    if name == "uq_booking_user_id_idempotency_key":
        return IdempotentReplay()
    return exc


async def seat_prices(
    session: AsyncSession, req: HoldRequest, *, lock: bool = False
) -> list[tuple[int, str, int, str, int]]:
    """(seat id, status, price, currency, version) of the requested seats, 422 if foreign."""
    sql = (
        "SELECT s.id, s.status, sec.price_minor, sec.currency, s.version FROM seat s"
        " JOIN seat_section sec ON sec.id = s.section_id"
        " WHERE s.id = ANY(:ids) AND s.concert_id = :concert_id ORDER BY s.id"
    )
    if lock:
        sql += " FOR UPDATE OF s"
    rows = (
        await session.execute(text(sql), {"ids": list(req.seat_ids), "concert_id": req.concert_id})
    ).all()
    if len(rows) != len(req.seat_ids):
        raise InvalidSeats(
            f"Seats {sorted(set(req.seat_ids) - {r[0] for r in rows})} are not in this concert."
        )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def check_available(rows: list[tuple[int, str, int, str, int]]) -> Claimed:
    taken = [r[0] for r in rows if r[1] != "available"]
    if taken:
        raise SeatTaken(f"Seats {taken} are already taken.", seat_ids=taken)
    return Claimed(tuple(r[0] for r in rows), sum(r[2] for r in rows), rows[0][3])


async def ga_row(
    session: AsyncSession, req: HoldRequest, *, lock: bool = False
) -> tuple[int, int, str, int]:
    """(stock, price, currency, version) of the concert's general admission."""
    sql = "SELECT stock, price_minor, currency, version FROM ga_inventory WHERE concert_id = :c"
    if lock:
        sql += " FOR UPDATE"
    row = (await session.execute(text(sql), {"c": req.concert_id})).first()
    if row is None:
        raise NoGeneralAdmission()
    return (row[0], row[1], row[2], row[3])


async def persist_hold(
    session: AsyncSession, state: AppState, req: HoldRequest, claimed: Claimed, strategy: str
) -> Booking:
    """Quota, booking row and seat rows, in the strategy's transaction."""
    await repository.take_quota(
        session,
        user_id=req.user_id,
        concert_id=req.concert_id,
        n=req.quantity,
        max_allowed=req.max_per_user,
    )
    booking = Booking(
        user_id=req.user_id,
        concert_id=req.concert_id,
        status=BookingStatus.held,
        general_admission=req.general_admission,
        quantity=req.quantity,
        amount_minor=claimed.amount_minor,
        currency=claimed.currency,
        strategy=strategy,
        hold_expires_at=datetime.now(UTC) + timedelta(seconds=state.settings.hold_ttl_s),
        idempotency_key=req.idempotency_key,
        request_hash=req.request_hash,
    )
    session.add(booking)
    await session.flush()
    session.add_all(BookingSeat(booking_id=booking.id, seat_id=s) for s in claimed.seat_ids)
    await session.flush()
    return booking


async def jitter_sleep(attempt: int) -> None:
    # Full jitter (AWS architecture blog): spreads retries so they do not collide again.
    await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))  # noqa: S311


class TransactionalStrategy:
    """Skeleton: guard (optional lock) → transaction → claim → persist → commit, with retries."""

    name: ClassVar[str]
    lazy_expiry: ClassVar[bool] = True

    def max_attempts(self, state: AppState) -> int:
        return 1

    @asynccontextmanager
    async def guard(self, state: AppState, req: HoldRequest) -> AsyncIterator[int]:
        """Anything held around the transaction; yields a fencing token (0 = none)."""
        yield 0

    async def prepare(self, session: AsyncSession, state: AppState) -> None:
        return None

    async def claim_seats(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        raise NotImplementedError

    async def claim_stock(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        raise NotImplementedError

    async def released(self, state: AppState, booking: Booking, seat_ids: list[int]) -> None:
        return None

    async def hold(self, state: AppState, req: HoldRequest) -> Booking:
        async with self.guard(state, req) as token:
            for attempt in range(self.max_attempts(state)):
                try:
                    async with state.sessionmaker() as session, session.begin():
                        await self.prepare(session, state)
                        if req.general_admission:
                            claimed = await self.claim_stock(session, req, token)
                        else:
                            claimed = await self.claim_seats(session, req, token)
                        return await persist_hold(session, state, req, claimed, self.name)
                except RetryClaim:
                    await jitter_sleep(attempt)
                except IntegrityError as exc:
                    raise map_integrity_error(exc) from exc
                except DBAPIError as exc:
                    if repository.sqlstate_of(exc) in (
                        LOCK_NOT_AVAILABLE,
                        DEADLOCK,
                        SERIALIZATION_FAILURE,
                    ):
                        raise BookingContention("Timed out waiting for a seat lock.") from exc
                    raise
        raise BookingContention(f"Gave up after {self.max_attempts(state)} attempts.")
