"""The `sale` table: a concert's on-sale window behind the waiting room.

PostgreSQL holds what must survive (window, status, admission bounds); the live queue is in
Redis (see `app/queue/store.py`) and is rebuilt from this row where it can be.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TimestampMixin


class SaleStatus(StrEnum):
    scheduled = "scheduled"
    open = "open"
    closed = "closed"


class CloseReason(StrEnum):
    time = "time"  # closes_at reached
    sold_out = "sold_out"
    manual = "manual"  # an organizer closed it


class Sale(TimestampMixin, Base):
    __tablename__ = "sale"
    __table_args__ = (
        CheckConstraint("status IN ('scheduled', 'open', 'closed')", name="status"),
        CheckConstraint(
            "close_reason IS NULL OR close_reason IN ('time', 'sold_out', 'manual')",
            name="close_reason",
        ),
        CheckConstraint("opens_at < closes_at", name="window"),
        CheckConstraint("max_active >= 1", name="max_active"),
        CheckConstraint(
            "min_rate > 0 AND min_rate <= initial_rate AND initial_rate <= max_rate", name="rates"
        ),
        # One live sale per concert: the booking gate maps a concert to exactly one queue.
        Index(
            "uq_sale_live_concert",
            "concert_id",
            unique=True,
            postgresql_where=text("status <> 'closed'"),
        ),
        Index("ix_sale_status_opens_at", "status", "opens_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    concert_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("concert.id", ondelete="RESTRICT"), index=True
    )
    opens_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closes_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(12), server_default=SaleStatus.scheduled.value)
    max_active: Mapped[int] = mapped_column(Integer)
    # Admission rates in fans per second.
    initial_rate: Mapped[float] = mapped_column(Double)
    min_rate: Mapped[float] = mapped_column(Double)
    max_rate: Mapped[float] = mapped_column(Double)
    close_reason: Mapped[str | None] = mapped_column(String(12))
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
