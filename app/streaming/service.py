"""Channels, stream keys and the nginx-rtmp publish lifecycle.

A publish is admitted by `on_publish` (the key's hash picks the channel; 3xx renames the stream
to the channel's public name, so neither HLS paths nor playback URLs contain the key), kept
alive by `on_update` (refused once the key is rotated, which makes nginx drop the publisher)
and ended by `on_publish_done` - or, if nginx died, by the first read or publish that finds the
session silent for `STALE_AFTER_UPDATES` update intervals. PostgreSQL holds the state; Redis
only the viewers (see store.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from app.catalog.artist import service as artist_service
from app.chat import service as chat_service
from app.core.pagination import InvalidCursor, decode_cursor, encode_cursor
from app.core.state import AppState
from app.streaming import repository
from app.streaming.errors import (
    CallbackForbidden,
    ChannelAlreadyLive,
    ChannelLive,
    ChannelNotFound,
    ChannelNotLive,
    StreamKeyInvalid,
    StreamSessionEnded,
)
from app.streaming.metrics import HEARTBEATS, PUBLISHES, SESSIONS_ENDED, UPDATES
from app.streaming.models import Channel, ChannelState
from app.streaming.schemas import (
    ChannelAdminRead,
    ChannelCreate,
    ChannelRead,
    ChannelUpdate,
    ChannelWithKey,
)
from app.streaming.store import StreamingStore

log = structlog.get_logger(__name__)

STREAM_KEY_PREFIX = "trsk_"
# A live session with no nginx update for this many update intervals is presumed dead.
STALE_AFTER_UPDATES = 3


def store_of(state: AppState) -> StreamingStore:
    return StreamingStore(state.redis, state.keys)


def new_stream_key() -> str:
    """256 random bits, URL- and RTMP-name-safe."""
    return STREAM_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # The key is 256 random bits: a fast unsalted hash is enough (nothing to brute-force).
    return hashlib.sha256(key.encode()).hexdigest()


def playback_url(state: AppState, channel: Channel) -> str:
    base = state.settings.streaming_hls_base_url.rstrip("/")
    return f"{base}/{channel.public_name}/index.m3u8"


def _session_ttl_s(state: AppState) -> int:
    return state.settings.streaming_update_interval_s * STALE_AFTER_UPDATES


def _stale_before(state: AppState) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=_session_ttl_s(state))


def _window_ms(state: AppState) -> int:
    return state.settings.streaming_viewer_window_s * 1000


def _public_fields(state: AppState, channel: Channel, viewers: int) -> dict[str, object]:
    return {
        "id": channel.id,
        "artist_id": channel.artist_id,
        "title": channel.title,
        "state": channel.state,
        "live_since": channel.live_since,
        "last_live_at": channel.last_live_at,
        "viewer_count": viewers if channel.state == ChannelState.live else 0,
        "playback_url": playback_url(state, channel),
        "created_at": channel.created_at,
        "updated_at": channel.updated_at,
    }


def _admin_fields(state: AppState, channel: Channel, viewers: int) -> dict[str, object]:
    return _public_fields(state, channel, viewers) | {
        "ingest_url": state.settings.streaming_ingest_url,
        "stream_key_hint": channel.stream_key_hint,
        "stream_key_rotated_at": channel.stream_key_rotated_at,
    }


async def _viewers(state: AppState, channels: list[Channel]) -> dict[int, int]:
    live = [c.id for c in channels if c.state == ChannelState.live]
    return await store_of(state).viewer_counts(live, window_ms=_window_ms(state))


async def _end_session(
    state: AppState, *, channel_id: int, where: list[Any], reason: str
) -> Channel | None:
    """Set a live channel OFF if `where` still holds; the ended channel, or None."""
    async with state.sessionmaker() as session:
        ended = await repository.conditional_update(
            session,
            channel_id,
            where=[Channel.state == ChannelState.live, *where],
            values={
                "state": ChannelState.off,
                "live_since": None,
                "live_seen_at": None,
                "last_live_at": datetime.now(UTC),
                "live_key_hash": None,
                "live_client_id": None,
            },
        )
        await session.commit()
    if ended is not None:
        await store_of(state).end_session(ended.id)
        SESSIONS_ENDED.labels(reason).inc()
        log.info("stream_ended", channel_id=ended.id, reason=reason)
    return ended


async def _expire_stale(state: AppState, channels: list[Channel]) -> list[Channel]:
    """Lazy expiry: a live session nginx stopped reporting (it died) ends on the next read."""
    stale_before = _stale_before(state)
    out = []
    for channel in channels:
        seen = channel.live_seen_at
        if channel.state == ChannelState.live and seen is not None and seen < stale_before:
            ended = await _end_session(
                state,
                channel_id=channel.id,
                where=[
                    Channel.live_client_id == channel.live_client_id,
                    Channel.live_seen_at == seen,
                ],
                reason="stale",
            )
            if ended is None:  # nginx reported (or the channel changed) meanwhile
                async with state.sessionmaker() as session:
                    ended = await repository.get(session, channel.id)
            if ended is None:
                continue
            channel = ended
        out.append(channel)
    return out


async def _get(state: AppState, channel_id: int) -> Channel:
    async with state.sessionmaker() as session:
        channel = await repository.get(session, channel_id)
    expired = await _expire_stale(state, [channel] if channel else [])
    if not expired:
        raise ChannelNotFound(f"No channel with id {channel_id}.")
    return expired[0]


async def _check_artist(state: AppState, artist_id: int) -> None:
    async with state.sessionmaker() as session:
        await artist_service.get_artist(session, artist_id=artist_id)


def _cursor_id(cursor: str) -> int:
    value = decode_cursor(cursor, 1)[0]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
        raise InvalidCursor("The cursor is not one this API issued.")
    return value


async def list_channels(
    state: AppState, *, live: bool | None, artist_id: int | None, cursor: str | None, limit: int
) -> tuple[list[ChannelRead], str | None]:
    """Channels in id order (keyset pages), with their current viewer counts."""
    after_id = _cursor_id(cursor) if cursor else None
    async with state.sessionmaker() as session:
        rows = await repository.page(
            session, live=live, artist_id=artist_id, after_id=after_id, limit=limit
        )
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    rows = await _expire_stale(state, rows[:limit])
    if live is not None:  # a session that just expired no longer matches `live=true`
        rows = [c for c in rows if (c.state == ChannelState.live) == live]
    viewers = await _viewers(state, rows)
    items = [
        ChannelRead.model_validate(_public_fields(state, c, viewers.get(c.id, 0))) for c in rows
    ]
    return items, next_cursor


async def get_channel(state: AppState, *, channel_id: int, admin: bool) -> ChannelRead:
    """One channel; admins also get the ingest URL and which key is configured."""
    channel = await _get(state, channel_id)
    viewers = (await _viewers(state, [channel])).get(channel.id, 0)
    if admin:
        return ChannelAdminRead.model_validate(_admin_fields(state, channel, viewers))
    return ChannelRead.model_validate(_public_fields(state, channel, viewers))


def _with_key(state: AppState, channel: Channel, key: str) -> ChannelWithKey:
    return ChannelWithKey.model_validate(_admin_fields(state, channel, 0) | {"stream_key": key})


async def create_channel(state: AppState, *, data: ChannelCreate) -> ChannelWithKey:
    """A new OFF channel for an existing artist; the answer is the only one with the key."""
    await _check_artist(state, data.artist_id)
    key = new_stream_key()
    async with state.sessionmaker() as session:
        channel = Channel(
            artist_id=data.artist_id,
            title=data.title,
            stream_key_hash=hash_key(key),
            stream_key_hint=key[-4:],
            stream_key_rotated_at=datetime.now(UTC),
        )
        session.add(channel)
        await session.commit()
        await session.refresh(channel)
    return _with_key(state, channel, key)


async def update_channel(
    state: AppState, *, channel_id: int, data: ChannelUpdate
) -> ChannelAdminRead:
    updates = data.model_dump(exclude_unset=True)
    if "artist_id" in updates:
        await _check_artist(state, updates["artist_id"])
    async with state.sessionmaker() as session:
        channel = await repository.get(session, channel_id)
        if channel is None:
            raise ChannelNotFound(f"No channel with id {channel_id}.")
        for field, value in updates.items():
            setattr(channel, field, value)
        await session.commit()
        await session.refresh(channel)
    viewers = (await _viewers(state, [channel])).get(channel.id, 0)
    return ChannelAdminRead.model_validate(_admin_fields(state, channel, viewers))


async def delete_channel(state: AppState, *, channel_id: int) -> None:
    """Delete an OFF channel. A live one is refused: rotate its key to cut the broadcast."""
    channel = await _get(state, channel_id)  # ends a stale session first
    if channel.state == ChannelState.off:
        async with state.sessionmaker() as session:
            deleted = await repository.delete_if_off(session, channel_id)
            await session.commit()
        if deleted:
            return
        await _get(state, channel_id)  # gone meanwhile: 404
    raise ChannelLive("End the broadcast first (rotating the key cuts it).")


async def rotate_stream_key(state: AppState, *, channel_id: int) -> ChannelWithKey:
    """Replace the stream key at once: the old key is refused from now on, and a broadcast
    running on it is dropped by nginx at its next update (`on_update` answers 403)."""
    key = new_stream_key()
    async with state.sessionmaker() as session:
        channel = await repository.conditional_update(
            session,
            channel_id,
            where=[],
            values={
                "stream_key_hash": hash_key(key),
                "stream_key_hint": key[-4:],
                "stream_key_rotated_at": datetime.now(UTC),
            },
        )
        if channel is None:
            raise ChannelNotFound(f"No channel with id {channel_id}.")
        await session.commit()
    return _with_key(state, channel, key)


async def heartbeat(state: AppState, *, channel_id: int, user_id: int) -> int:
    """Count a signed-in fan as watching a live channel for the viewer window (Redis only)."""
    count = await store_of(state).heartbeat(
        channel_id, viewer=str(user_id), window_ms=_window_ms(state)
    )
    if count is None:
        HEARTBEATS.labels("not_live").inc()
        await _get(state, channel_id)  # 404 for a channel that does not exist
        raise ChannelNotLive("Viewers are counted while the channel is live.")
    HEARTBEATS.labels("counted").inc()
    return count


# nginx-rtmp callbacks


def check_callback_secret(state: AppState, *, secret: str | None) -> None:
    expected = state.settings.streaming_callback_secret.get_secret_value().encode()
    if secret is None or not hmac.compare_digest(secret.encode(), expected):
        raise CallbackForbidden()


async def on_publish(state: AppState, *, stream_key: str, client_id: str, addr: str) -> Channel:
    """Admit a publisher whose stream key is a channel's current key: the channel goes LIVE.

    A channel already live refuses a second publisher while nginx reports its session; a
    session silent for `STALE_AFTER_UPDATES` update intervals (nginx died) is taken over."""
    key_hash = hash_key(stream_key)
    async with state.sessionmaker() as session:
        channel = await repository.by_key_hash(session, key_hash)
        if channel is None:
            PUBLISHES.labels("unknown_key").inc()
            log.info("rtmp_publish_refused", reason="unknown-key", addr=addr)
            raise StreamKeyInvalid("No channel has this stream key (wrong or rotated).")
        # Read before the update: the RETURNING refreshes this same object.
        taking_over = channel.state == ChannelState.live
        if taking_over:
            seen = channel.live_seen_at
            if seen is not None and seen >= _stale_before(state):
                PUBLISHES.labels("already_live").inc()
                raise ChannelAlreadyLive(f"Channel {channel.id} is already live.")
            log.warning("rtmp_stale_session_taken_over", channel_id=channel.id)
        now = datetime.now(UTC)
        updated = await repository.conditional_update(
            session,
            channel.id,
            where=[
                Channel.stream_key_hash == key_hash,
                Channel.state == channel.state,
                Channel.live_client_id.is_not_distinct_from(channel.live_client_id),
            ],
            values={
                "state": ChannelState.live,
                "live_since": now,
                "live_seen_at": now,
                "live_key_hash": key_hash,
                "live_client_id": client_id,
            },
        )
        if updated is None:  # a concurrent publish or rotation won
            PUBLISHES.labels("already_live").inc()
            raise ChannelAlreadyLive(f"Channel {channel.id} changed while publishing; retry.")
        await session.commit()
    await store_of(state).start_session(updated.id, ttl_s=_session_ttl_s(state))
    PUBLISHES.labels("takeover" if taking_over else "live").inc()
    log.info("rtmp_publish", channel_id=updated.id, addr=addr, client_id=client_id)
    return updated


async def on_relay_publish(state: AppState, *, public_name: str) -> None:
    """Admit the push from nginx's ingest application into its HLS application: only the
    public name of a live channel (anything else published there directly is refused)."""
    match = re.fullmatch(r"ch-([1-9][0-9]{0,17})", public_name)
    async with state.sessionmaker() as session:
        channel = await repository.get(session, int(match.group(1))) if match else None
    if channel is None or channel.state != ChannelState.live:
        PUBLISHES.labels("relay_refused").inc()
        raise StreamSessionEnded("Only a live channel's stream is published for HLS.")


async def on_update(state: AppState, *, stream_key: str, client_id: str) -> None:
    """Record that a live session still runs, or refuse it (nginx then drops the publisher)
    when the key was rotated or the session is no longer the channel's."""
    async with state.sessionmaker() as session:
        channel_id = await repository.touch_session(
            session, key_hash=hash_key(stream_key), client_id=client_id, seen_at=datetime.now(UTC)
        )
        await session.commit()
    if channel_id is None:
        UPDATES.labels("refused").inc()
        raise StreamSessionEnded("The stream key was rotated or the session ended.")
    UPDATES.labels("alive").inc()
    await store_of(state).refresh_session(channel_id, ttl_s=_session_ttl_s(state))


async def on_publish_done(state: AppState, *, stream_key: str, client_id: str) -> Channel | None:
    """The publisher stopped: its channel goes OFF (if this was the channel's live session).

    nginx removes the stream's HLS files itself (`exec_publish_done` in the config), since the
    API need not share nginx's filesystem."""
    key_hash = hash_key(stream_key)
    async with state.sessionmaker() as session:
        channel = await repository.live_session(session, key_hash=key_hash, client_id=client_id)
    if channel is None:
        return None
    return await _end_session(
        state,
        channel_id=channel.id,
        where=[Channel.live_key_hash == key_hash, Channel.live_client_id == client_id],
        reason="publish_done",
    )


async def announce_live(state: AppState, *, channel: Channel) -> None:
    """Post the "LIVE now" event to the artist's chat room."""
    await chat_service.post_system_event(
        state,
        room=f"artist.{channel.artist_id}",
        event="live_now",
        data={
            "channel_id": channel.id,
            "artist_id": channel.artist_id,
            "title": channel.title,
            "playback_url": playback_url(state, channel),
            "live_since": channel.live_since.isoformat() if channel.live_since else None,
        },
    )


async def announce_live_best_effort(state: AppState, *, channel: Channel) -> None:
    """`announce_live`, bounded in time; a chat failure never undoes or delays a broadcast."""
    try:
        async with asyncio.timeout(state.settings.streaming_announce_timeout_s):
            await announce_live(state, channel=channel)
    except Exception:
        log.warning("live_announce_failed", channel_id=channel.id, exc_info=True)
