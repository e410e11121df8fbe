from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TimestampMixin


class ArtistKind(StrEnum):
    group = "group"
    soloist = "soloist"
    member = "member"
    subunit = "subunit"


class Artist(TimestampMixin, Base):
    """An act; groups have members and sub-units through `parent_id`."""

    __tablename__ = "artist"
    __table_args__ = (
        CheckConstraint("kind IN ('group', 'soloist', 'member', 'subunit')", name="kind"),
        Index("uq_artist_name_lower", func.lower(text("name")), unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    agency_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("agency.id", ondelete="RESTRICT"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("artist.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16), server_default=ArtistKind.group.value)
