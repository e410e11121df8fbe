from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.chat.rooms import ROOM_PATTERN
from app.core.types import Text200

RoomName = Annotated[str, StringConstraints(pattern=ROOM_PATTERN)]
MESSAGE_EVENT = "message"


class ChatMessage(BaseModel):
    """A chat message or a room event, as delivered over STOMP and listed in history."""

    id: str = Field(description="Server-assigned id (the Redis Stream id for stored entries)")
    room: str
    event: str = Field(description="`message` for fan messages, else the event name")
    user_id: int | None = None
    text: str | None = None
    data: dict[str, Any] | None = None
    sent_at: datetime = Field(description="Server time")


class MessagePage(BaseModel):
    items: list[ChatMessage] = Field(description="Oldest first")
    next_before: str | None = Field(description="Pass as `before` for older messages")


class RoomRead(BaseModel):
    room: str
    destination: str
    slow_mode_s: int
    online_users: int = Field(description="Distinct users subscribed, across all API processes")


class RoomSettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slow_mode_s: int = Field(ge=0, le=3600, strict=True, description="0 turns slow mode off")


class SanctionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_s: int | None = Field(
        default=None, ge=1, le=365 * 86_400, strict=True, description="Omit for no end"
    )
    reason: Text200 | None = None


class SanctionRead(BaseModel):
    room: str
    user_id: int
    kind: str
    until: datetime | None
    reason: str | None
    by_user_id: int
