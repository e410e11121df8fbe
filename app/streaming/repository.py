"""All SQL of the streaming domain (the `channel` table)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.streaming.models import Channel, ChannelState


async def get(session: AsyncSession, channel_id: int) -> Channel | None:
    return await session.get(Channel, channel_id)


async def by_key_hash(session: AsyncSession, key_hash: str) -> Channel | None:
    channel: Channel | None = await session.scalar(
        select(Channel).where(Channel.stream_key_hash == key_hash)
    )
    return channel


async def live_session(session: AsyncSession, *, key_hash: str, client_id: str) -> Channel | None:
    """The channel whose live session was admitted with this key from this nginx client."""
    channel: Channel | None = await session.scalar(
        select(Channel).where(
            Channel.state == ChannelState.live,
            Channel.live_key_hash == key_hash,
            Channel.live_client_id == client_id,
        )
    )
    return channel


async def touch_session(
    session: AsyncSession, *, key_hash: str, client_id: str, seen_at: datetime
) -> int | None:
    """Record that nginx still reports this live session, unless its key was rotated meanwhile;
    the channel id, or None."""
    stmt = (
        update(Channel)
        .where(
            Channel.state == ChannelState.live,
            Channel.live_key_hash == key_hash,
            Channel.live_client_id == client_id,
            Channel.stream_key_hash == key_hash,
        )
        .values(live_seen_at=seen_at)
        .returning(Channel.id)
    )
    channel_id: int | None = await session.scalar(stmt)
    return channel_id


async def page(
    session: AsyncSession,
    *,
    live: bool | None,
    artist_id: int | None,
    after_id: int | None,
    limit: int,
) -> list[Channel]:
    """Up to `limit + 1` channels in id order after `after_id` (the extra row says "more")."""
    stmt = select(Channel)
    if live is not None:
        stmt = stmt.where(Channel.state == (ChannelState.live if live else ChannelState.off))
    if artist_id is not None:
        stmt = stmt.where(Channel.artist_id == artist_id)
    if after_id is not None:
        stmt = stmt.where(Channel.id > after_id)
    return list((await session.scalars(stmt.order_by(Channel.id).limit(limit + 1))).all())


async def conditional_update(
    session: AsyncSession, channel_id: int, *, where: list[Any], values: dict[str, Any]
) -> Channel | None:
    """Update one channel only if `where` still holds (a lost race changes nothing)."""
    stmt = (
        update(Channel)
        .where(Channel.id == channel_id, *where)
        .values(**values)
        .returning(Channel)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    channel: Channel | None = await session.scalar(stmt)
    return channel


async def delete_if_off(session: AsyncSession, channel_id: int) -> bool:
    stmt = (
        delete(Channel)
        .where(Channel.id == channel_id, Channel.state == ChannelState.off)
        .returning(Channel.id)
    )
    return (await session.scalar(stmt)) is not None
