"""Concerts: CRUD with status rules, and cached detail/list reads."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.catalog.artist.models import Artist
from app.catalog.common import changes, commit_or_conflict, keyset_page
from app.catalog.concert import repository
from app.catalog.concert.models import TRANSITIONS, Concert
from app.catalog.concert.schemas import ConcertCreate, ConcertRead, ConcertUpdate
from app.catalog.errors import (
    ArtistNotFound,
    CatalogConflict,
    ConcertNotFound,
    InvalidStatusTransition,
    VenueNotFound,
)
from app.catalog.venue.models import Venue
from app.core.cache import CachedResponse, ResponseCache
from app.core.db import allow_bulk_statements
from app.core.pagination import Page

LIST_NAMESPACE = "concerts"


def concert_namespace(concert_id: int) -> str:
    return f"concert:{concert_id}"


async def invalidate_concert(cache: ResponseCache, concert_id: int) -> None:
    await cache.invalidate(concert_namespace(concert_id), LIST_NAMESPACE)


async def invalidate_concerts_of(
    session: AsyncSession,
    cache: ResponseCache,
    *,
    artist_id: int | None = None,
    venue_id: int | None = None,
) -> None:
    """Concert pages embed artist and venue names: drop the pages that show this one."""
    ids = await repository.concert_ids_of(session, artist_id=artist_id, venue_id=venue_id)
    await cache.invalidate(LIST_NAMESPACE, *(concert_namespace(i) for i in ids))


async def get_concert(session: AsyncSession, *, concert_id: int) -> Concert:
    concert = await repository.load_concert(session, concert_id)
    if concert is None:
        raise ConcertNotFound(f"No concert with id {concert_id}.")
    return concert


async def get_concert_cached(
    sessions: async_sessionmaker[AsyncSession], cache: ResponseCache, *, concert_id: int
) -> CachedResponse:
    """The rendered concert detail, from Redis when possible (one DB load per cold key).

    Takes the session factory: a cache hit never creates a session."""

    async def load() -> bytes | None:
        async with sessions() as session:
            concert = await repository.load_concert(session, concert_id)
            if concert is None:
                return None
            return ConcertRead.model_validate(concert).model_dump_json().encode()

    cached = await cache.get_or_load(
        "concert_detail", concert_namespace(concert_id), "detail", load
    )
    if cached.body is None:
        raise ConcertNotFound(f"No concert with id {concert_id}.")
    return cached


async def list_concerts_cached(
    sessions: async_sessionmaker[AsyncSession],
    cache: ResponseCache,
    *,
    agency_id: int | None,
    artist_id: int | None,
    venue_id: int | None,
    status: str | None,
    starts_after: datetime | None,
    starts_before: datetime | None,
    cursor: str | None,
    limit: int,
    q: str | None = None,
) -> CachedResponse:
    params = {
        "agency_id": agency_id,
        "artist_id": artist_id,
        "venue_id": venue_id,
        "status": status,
        "starts_after": starts_after.isoformat() if starts_after else None,
        "starts_before": starts_before.isoformat() if starts_before else None,
        "cursor": cursor,
        "limit": limit,
        "q": q,
    }
    key = urlencode(sorted((k, v) for k, v in params.items() if v is not None))

    async def load() -> bytes:
        stmt = repository.filtered(
            agency_id=agency_id,
            artist_id=artist_id,
            venue_id=venue_id,
            status=status,
            starts_after=starts_after,
            starts_before=starts_before,
            q=q,
        )
        async with sessions() as session:
            rows, next_cursor = await keyset_page(
                session,
                stmt,
                order=[Concert.starts_at, Concert.id],
                cursor=cursor,
                limit=limit,
                key_of=lambda c: [c.starts_at.isoformat(), c.id],
            )
            page = Page[ConcertRead](
                items=[ConcertRead.model_validate(c) for c in rows], next_cursor=next_cursor
            )
        return page.model_dump_json().encode()

    return await cache.get_or_load("concert_list", LIST_NAMESPACE, key, load)


async def _check_refs(
    session: AsyncSession, *, artist_id: int | None, venue_id: int | None
) -> None:
    if artist_id is not None and await session.get(Artist, artist_id) is None:
        raise ArtistNotFound(f"No artist with id {artist_id}.")
    if venue_id is not None and await session.get(Venue, venue_id) is None:
        raise VenueNotFound(f"No venue with id {venue_id}.")


async def create_concert(
    session: AsyncSession, cache: ResponseCache, *, data: ConcertCreate
) -> Concert:
    await _check_refs(session, artist_id=data.artist_id, venue_id=data.venue_id)
    concert = Concert(**data.model_dump())
    session.add(concert)
    await commit_or_conflict(session, CatalogConflict, "The concert conflicts with another.")
    await cache.invalidate(LIST_NAMESPACE)
    return await get_concert(session, concert_id=concert.id)


async def update_concert(
    session: AsyncSession, cache: ResponseCache, *, concert_id: int, data: ConcertUpdate
) -> Concert:
    concert = await repository.lock_concert(session, concert_id)
    if concert is None:
        raise ConcertNotFound(f"No concert with id {concert_id}.")
    updates = changes(data)
    new_status = updates.get("status")
    allowed = TRANSITIONS[concert.status]
    if new_status not in (None, concert.status) and new_status not in allowed:
        raise InvalidStatusTransition(
            f"A {concert.status} concert cannot become {new_status}.", allowed=sorted(allowed)
        )
    await _check_refs(session, artist_id=updates.get("artist_id"), venue_id=updates.get("venue_id"))
    for field, value in updates.items():
        setattr(concert, field, value)
    await commit_or_conflict(session, CatalogConflict, "The concert conflicts with another.")
    await invalidate_concert(cache, concert_id)
    session.expunge(concert)
    return await get_concert(session, concert_id=concert_id)


async def delete_concert(session: AsyncSession, cache: ResponseCache, *, concert_id: int) -> None:
    concert = await repository.lock_concert(session, concert_id)
    if concert is None:
        raise ConcertNotFound(f"No concert with id {concert_id}.")
    if concert.status != "draft":
        raise InvalidStatusTransition("Only draft concerts can be deleted; finish it instead.")
    await allow_bulk_statements(session)  # the seats go with it, one FK trigger each
    await session.delete(concert)
    await commit_or_conflict(session, CatalogConflict, "The concert is still referenced.")
    await invalidate_concert(cache, concert_id)
