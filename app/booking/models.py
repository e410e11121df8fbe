"""Booking domain tables. Seat availability columns (`seat.status/version/fence`) are booking
state too; the catalog only reads them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TimestampMixin


class BookingStatus(StrEnum):
    held = "held"
    paid = "paid"
    confirmed = "confirmed"
    expired = "expired"
    cancelled = "cancelled"


ACTIVE_STATUSES = (BookingStatus.held, BookingStatus.paid, BookingStatus.confirmed)


class GaInventory(Base):
    """General-admission stock of a concert. CHECK keeps it in [0, total] whatever the strategy."""

    __tablename__ = "ga_inventory"
    __table_args__ = (CheckConstraint("stock >= 0 AND stock <= total", name="stock"),)

    concert_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("concert.id", ondelete="CASCADE"), primary_key=True
    )
    total: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer)
    price_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    fence: Mapped[int] = mapped_column(BigInteger, server_default="0")


class Booking(TimestampMixin, Base):
    __tablename__ = "booking"
    # INSERT … RETURNING the server defaults: the API answers from the object, no re-read.
    __mapper_args__ = {"eager_defaults": True}
    __table_args__ = (
        CheckConstraint(
            "status IN ('held', 'paid', 'confirmed', 'expired', 'cancelled')", name="status"
        ),
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint("amount_minor >= 0", name="amount_minor"),
        UniqueConstraint("user_id", "idempotency_key"),
        Index(
            "ix_booking_held_expiry",
            "hold_expires_at",
            postgresql_where=text("status = 'held'"),
        ),
        Index("ix_booking_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id", ondelete="RESTRICT"))
    concert_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("concert.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(12))
    general_admission: Mapped[bool] = mapped_column(Boolean)
    quantity: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    strategy: Mapped[str] = mapped_column(String(16))
    hold_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    idempotency_key: Mapped[str | None] = mapped_column(String(100))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    payment_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BookingSeat(Base):
    """A seat held or sold by a booking; the partial unique index is the last line of defence
    against selling a seat twice, whatever the strategy did."""

    __tablename__ = "booking_seat"
    __table_args__ = (
        Index(
            "uq_booking_seat_active_seat", "seat_id", unique=True, postgresql_where=text("active")
        ),
        # The partial index above cannot serve the FK check when seats are deleted.
        Index("ix_booking_seat_seat_id", "seat_id"),
    )

    booking_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("booking.id", ondelete="CASCADE"), primary_key=True
    )
    seat_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("seat.id", ondelete="RESTRICT"), primary_key=True
    )
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")


class TicketQuota(Base):
    """Tickets a fan holds or owns for a concert; the CHECK enforces the limit atomically."""

    __tablename__ = "ticket_quota"
    __table_args__ = (CheckConstraint("used >= 0 AND used <= max_allowed", name="used"),)

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True
    )
    concert_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("concert.id", ondelete="CASCADE"), primary_key=True
    )
    used: Mapped[int] = mapped_column(Integer)
    max_allowed: Mapped[int] = mapped_column(Integer)


class Ticket(Base):
    __tablename__ = "ticket"
    __table_args__ = (UniqueConstraint("code"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    booking_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("booking.id", ondelete="RESTRICT"), index=True
    )
    concert_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("concert.id", ondelete="RESTRICT"), index=True
    )
    seat_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("seat.id", ondelete="RESTRICT"), index=True
    )
    code: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PaymentStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    declined = "declined"
    refunded = "refunded"


class Payment(TimestampMixin, Base):
    """A charge attempt. The provider idempotency key is made from the booking id, the attempt
    number and a random part, and a pending attempt is always replayed with its key, so a retried or
    timed-out pay request can never charge twice; at most one attempt per booking succeeds."""

    __tablename__ = "payment"
    __table_args__ = (
        UniqueConstraint("provider_key"),
        Index(
            "uq_payment_booking_succeeded",
            "booking_id",
            unique=True,
            postgresql_where=text("status = 'succeeded'"),
        ),
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'declined', 'refunded')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    booking_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("booking.id", ondelete="RESTRICT"), index=True
    )
    provider_key: Mapped[str] = mapped_column(String(100))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12))
    charge_id: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")


class BookingInbox(Base):
    """Processed booking requests from Kafka (strategy F): at-least-once delivery, applied once."""

    __tablename__ = "booking_inbox"
    __table_args__ = (Index("ix_booking_inbox_concert_id", "concert_id"),)

    request_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # Who may read the outcome (owner-only polls) and which inventory it belongs to
    # (reconciliation); no foreign keys: the inbox records requests, even refused ones.
    user_id: Mapped[int] = mapped_column(BigInteger)
    concert_id: Mapped[int] = mapped_column(BigInteger)
    booking_id: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(24))
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    processed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
