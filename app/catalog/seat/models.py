from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class SeatStatus(StrEnum):
    available = "available"
    held = "held"
    sold = "sold"


class SeatSection(Base):
    """A section of a concert's seat map; its price is the section's price tier."""

    __tablename__ = "seat_section"
    __table_args__ = (
        UniqueConstraint("concert_id", "name"),
        CheckConstraint("price_minor >= 0", name="price_minor"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    concert_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("concert.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(60))
    price_tier: Mapped[str] = mapped_column(String(30))
    price_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    position: Mapped[int] = mapped_column(Integer)


class Seat(Base):
    __tablename__ = "seat"
    __table_args__ = (
        UniqueConstraint("section_id", "row_label", "number"),
        CheckConstraint("status IN ('available', 'held', 'sold')", name="status"),
        Index("ix_seat_concert_id_status", "concert_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    concert_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("concert.id", ondelete="CASCADE")
    )
    section_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("seat_section.id", ondelete="CASCADE")
    )
    row_label: Mapped[str] = mapped_column(String(8))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), server_default=SeatStatus.available.value)
    # Optimistic-locking version for the booking strategies that need one.
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    # Highest fencing token that wrote this seat (strategy redis_lock): older holders are refused.
    fence: Mapped[int] = mapped_column(BigInteger, server_default="0")
