from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TimestampMixin


class ChannelState(StrEnum):
    off = "off"
    live = "live"


class Channel(TimestampMixin, Base):
    """A broadcast channel of an artist. Only the SHA-256 of its stream key is stored.

    `artist_id` has no foreign key on purpose: streaming may move to its own database
    (DESIGN §1); the artist is checked through the catalog's service when the channel is made."""

    __tablename__ = "channel"
    __table_args__ = (
        CheckConstraint("state IN ('off', 'live')", name="state"),
        # A live session carries its start, the key it published with and nginx's client id.
        CheckConstraint(
            "(state = 'live') = (live_since IS NOT NULL AND live_seen_at IS NOT NULL"
            " AND live_key_hash IS NOT NULL AND live_client_id IS NOT NULL)",
            name="live_session",
        ),
        Index("ix_channel_live", "state", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    artist_id: Mapped[int] = mapped_column(BigInteger, index=True)
    title: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(8), server_default=ChannelState.off.value)
    live_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_live_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stream_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    stream_key_hint: Mapped[str] = mapped_column(String(4))
    stream_key_rotated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The live session: which key it was admitted with (it may be rotated meanwhile), the
    # nginx-rtmp client id (so a late publish_done of another session cannot end this one) and
    # when nginx last reported it (publish or update): silent for too long means nginx died.
    live_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    live_key_hash: Mapped[str | None] = mapped_column(String(64))
    live_client_id: Mapped[str | None] = mapped_column(String(32))

    @property
    def public_name(self) -> str:
        """The stream's name after on_publish renames it: HLS directory and playback path."""
        return f"ch-{self.id}"
