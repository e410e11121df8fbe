from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.types import BodyId, Id, Text200
from app.streaming.models import ChannelState


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artist_id: BodyId
    title: Text200


class ChannelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artist_id: BodyId | None = None
    title: Text200 | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(f for f in self.model_fields_set if getattr(self, f) is None)
        if nulls:
            raise ValueError(f"these fields cannot be null: {', '.join(nulls)}")
        return self


class ChannelRead(BaseModel):
    """What everyone sees. Never carries the stream key or anything derived from it."""

    id: Id
    artist_id: Id
    title: str
    state: ChannelState
    live_since: datetime | None = Field(description="Start of the current broadcast (live only)")
    last_live_at: datetime | None = Field(description="When the last finished broadcast ended")
    viewer_count: int = Field(
        ge=0,
        description="Signed-in fans whose player sent a heartbeat within the viewer window "
        "(TR_STREAMING_VIEWER_WINDOW_S); 0 when off",
    )
    playback_url: str = Field(description="HLS playlist; it answers 404 while the channel is off")
    created_at: datetime
    updated_at: datetime


class ChannelAdminRead(ChannelRead):
    """What admins see: where to publish and which key is configured (never the key itself)."""

    ingest_url: str = Field(description='RTMP server URL for the encoder ("Server" in OBS)')
    stream_key_hint: str = Field(description="Last four characters of the current stream key")
    stream_key_rotated_at: datetime


class ChannelWithKey(ChannelAdminRead):
    """Answer of create and rotate: the only time the stream key is shown."""

    stream_key: str = Field(description="Shown once; only its hash is stored. Rotate if lost.")


class ViewerHeartbeat(BaseModel):
    viewer_count: int = Field(ge=0)
    next_heartbeat_s: int = Field(ge=1, description="Send the next heartbeat within this time")
