from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.catalog.artist.models import Artist
from app.catalog.venue.models import Venue
from app.core.db import Base, TimestampMixin


class ConcertStatus(StrEnum):
    draft = "draft"
    on_sale = "on_sale"
    sold_out = "sold_out"
    finished = "finished"


# Allowed status moves; anything else is a 409.
TRANSITIONS: dict[str, set[str]] = {
    "draft": {"on_sale"},
    "on_sale": {"sold_out", "finished"},
    "sold_out": {"on_sale", "finished"},
    "finished": set(),
}


class Concert(TimestampMixin, Base):
    __tablename__ = "concert"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'on_sale', 'sold_out', 'finished')", name="status"),
        CheckConstraint("max_tickets_per_user BETWEEN 1 AND 20", name="max_tickets_per_user"),
        Index("ix_concert_starts_at_id", "starts_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    artist_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("artist.id", ondelete="RESTRICT"), index=True
    )
    # NULL only for concerts migrated from the legacy schema, which had no venues.
    venue_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("venue.id", ondelete="RESTRICT"), index=True
    )
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), server_default=ConcertStatus.draft.value)
    max_tickets_per_user: Mapped[int] = mapped_column(Integer, server_default="4")

    artist: Mapped[Artist] = relationship(lazy="raise")
    venue: Mapped[Venue | None] = relationship(lazy="raise")
