"""Chat rooms: posting, history, moderation and presence. The public entry points of the
domain; other domains (streaming's "LIVE now") call these, never the store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app.catalog.artist.service import get_artist
from app.catalog.concert.service import get_concert
from app.catalog.errors import ArtistNotFound, ConcertNotFound
from app.chat.errors import (
    Banned,
    InvalidMessage,
    MessageNotFound,
    MessageTooLarge,
    Muted,
    RoomNotFound,
    SendRateLimited,
    SlowMode,
)
from app.chat.metrics import CHAT_POSTS
from app.chat.rooms import Room, RoomKind
from app.chat.schemas import MESSAGE_EVENT, ChatMessage, RoomRead, SanctionCreate, SanctionRead
from app.chat.store import ChatStore
from app.core import ratelimit
from app.core.security import AccessClaims
from app.core.state import AppState


def store_of(state: AppState) -> ChatStore:
    return ChatStore(state.redis, state.keys)


def sent_at_of(message_id: str) -> datetime:
    """Stream ids start with the Redis server's clock in ms: that is the message's time."""
    return datetime.fromtimestamp(int(message_id.split("-", 1)[0]) / 1000, UTC)


def message_of(message_id: str, entry: dict[str, Any]) -> ChatMessage:
    return ChatMessage(id=message_id, sent_at=sent_at_of(message_id), **entry)


async def get_room(state: AppState, *, name: str) -> Room:
    """Parse a room name and check its artist or concert exists in the catalog."""
    room = Room.parse(name)
    store = store_of(state)
    if await store.room_known(room.name):
        return room

    try:
        async with state.sessionmaker() as session:
            if room.kind is RoomKind.artist:
                await get_artist(session, artist_id=room.ref_id)
            else:
                await get_concert(session, concert_id=room.ref_id)
    except (ArtistNotFound, ConcertNotFound):
        raise RoomNotFound(f"There is no {room.kind} with id {room.ref_id}.") from None
    await store.remember_room(room.name, state.settings.chat_room_cache_s)
    return room


async def check_can_read(state: AppState, *, room: Room, user_id: int) -> None:
    if "ban" in await store_of(state).sanctions(room.name, user_id):
        raise Banned(f"You are banned from {room.name}.")


async def post_message(
    state: AppState, *, room: Room, user: AccessClaims, body: bytes
) -> ChatMessage:
    """Check size, sanctions, the user's rate and the room's slow mode; store and broadcast."""
    settings = state.settings
    if len(body) > settings.chat_max_message_bytes:
        raise MessageTooLarge(
            f"A message may have at most {settings.chat_max_message_bytes} bytes "
            f"({len(body)} sent)."
        )
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise InvalidMessage("The message body must be UTF-8 text.") from None
    if not text.strip():
        raise InvalidMessage("The message is empty.")
    store = store_of(state)
    sanctions = await store.sanctions(room.name, user.user_id)
    if "ban" in sanctions:
        raise Banned(f"You are banned from {room.name}.")
    if "mute" in sanctions:
        raise Muted(f"You are muted in {room.name}.")
    wait = await ratelimit.hit(
        state.redis,
        state.keys("chat", "rate", user.user_id),
        limit=settings.chat_send_limit,
        window_s=settings.chat_send_window_s,
    )
    if wait is not None:
        raise SendRateLimited(
            wait,
            f"At most {settings.chat_send_limit} messages per "
            f"{settings.chat_send_window_s} s; retry in {wait} s.",
        )
    slow = await store.slow_mode_s(room.name)
    if slow and user.role != "admin":
        wait_ms = await store.take_slow_slot(room.name, user.user_id, slow)
        if wait_ms is not None:
            retry = -(-wait_ms // 1000)
            raise SlowMode(
                retry, f"{room.name} allows one message per {slow} s; retry in {retry} s."
            )
    entry: dict[str, Any] = {
        "room": room.name,
        "event": MESSAGE_EVENT,
        "user_id": user.user_id,
        "text": text,
    }
    message_id = await store.append(room.name, entry, keep=settings.chat_history_len)
    CHAT_POSTS.labels(MESSAGE_EVENT).inc()
    return message_of(message_id, entry)


async def post_system_event(
    state: AppState, *, room: str, event: str, data: dict[str, Any]
) -> ChatMessage:
    """Post a server event (e.g. `live_now`) to a room: kept in its history and delivered to
    every subscriber as a MESSAGE with an `event` header and this read model as JSON body."""
    checked = await get_room(state, name=room)
    entry: dict[str, Any] = {"room": checked.name, "event": event, "data": data}
    message_id = await store_of(state).append(
        checked.name, entry, keep=state.settings.chat_history_len
    )
    CHAT_POSTS.labels(event).inc()
    return message_of(message_id, entry)


async def history(
    state: AppState, *, room: Room, limit: int, before: str | None = None
) -> list[ChatMessage]:
    rows = await store_of(state).history(room.name, count=limit, before=before)
    return [message_of(mid, entry) for mid, entry in rows]


async def delete_message(state: AppState, *, room: Room, message_id: str, by: int) -> None:
    """Remove a message from history and tell every subscriber (`message_deleted` event)."""
    event = ChatMessage(
        id=uuid.uuid4().hex,
        room=room.name,
        event="message_deleted",
        data={"id": message_id, "by_user_id": by},
        sent_at=datetime.now(UTC),
    )
    payload = {"type": "message", "message": event.model_dump(mode="json")}
    if not await store_of(state).delete(room.name, message_id, payload):
        raise MessageNotFound(f"No message {message_id} in {room.name}.")


async def sanction(
    state: AppState, *, room: Room, user_id: int, kind: str, data: SanctionCreate, by: int
) -> SanctionRead:
    """Mute (no SEND) or ban (no SEND, no SUBSCRIBE, current subscriptions dropped)."""
    until = datetime.now(UTC) + timedelta(seconds=data.duration_s) if data.duration_s else None
    record = SanctionRead(
        room=room.name, user_id=user_id, kind=kind, until=until, reason=data.reason, by_user_id=by
    )
    store = store_of(state)
    await store.set_sanction(
        kind, room.name, user_id, record.model_dump(mode="json"), data.duration_s
    )
    if kind == "ban":
        await store.publish(room.name, {"type": "ban", "user_id": user_id})
    return record


async def lift_sanction(state: AppState, *, room: Room, user_id: int, kind: str) -> None:
    await store_of(state).clear_sanction(kind, room.name, user_id)


async def set_slow_mode(state: AppState, *, room: Room, seconds: int) -> RoomRead:
    await store_of(state).set_slow_mode_s(room.name, seconds)
    return await room_info(state, room=room)


async def room_info(state: AppState, *, room: Room) -> RoomRead:
    store = store_of(state)
    return RoomRead(
        room=room.name,
        destination=room.destination,
        slow_mode_s=await store.slow_mode_s(room.name),
        online_users=await store.online_users(room.name),
    )
