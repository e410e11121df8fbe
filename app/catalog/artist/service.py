from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.agency.service import get_agency
from app.catalog.artist.models import Artist, ArtistKind
from app.catalog.artist.schemas import ArtistCreate, ArtistUpdate
from app.catalog.common import changes, commit_or_conflict, keyset_page, slugify
from app.catalog.concert.service import invalidate_concerts_of
from app.catalog.errors import ArtistNotFound, CatalogConflict, InvalidHierarchy
from app.core.cache import ResponseCache

_DUPLICATE = "An artist with this name or slug already exists."


async def get_artist(session: AsyncSession, *, artist_id: int) -> Artist:
    artist = await session.get(Artist, artist_id)
    if artist is None:
        raise ArtistNotFound(f"No artist with id {artist_id}.")
    return artist


async def list_artists(
    session: AsyncSession,
    *,
    agency_id: int | None,
    parent_id: int | None,
    kind: ArtistKind | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Artist], str | None]:
    stmt = select(Artist)
    if agency_id is not None:
        stmt = stmt.where(Artist.agency_id == agency_id)
    if parent_id is not None:
        stmt = stmt.where(Artist.parent_id == parent_id)
    if kind is not None:
        stmt = stmt.where(Artist.kind == kind)
    return await keyset_page(
        session, stmt, order=[Artist.id], cursor=cursor, limit=limit, key_of=lambda a: [a.id]
    )


async def _check_hierarchy(
    session: AsyncSession, *, artist_id: int | None, kind: str, parent_id: int | None
) -> None:
    """Members and sub-units hang under a group (or a sub-unit); no cycles."""
    if kind in (ArtistKind.member, ArtistKind.subunit) and parent_id is None:
        raise InvalidHierarchy(f"A {kind} needs a parent_id (its group).")
    if parent_id is None:
        return
    if kind in (ArtistKind.group, ArtistKind.soloist):
        raise InvalidHierarchy(f"A {kind} cannot have a parent; use kind member or subunit.")
    seen: set[int] = set()
    cursor: int | None = parent_id
    while cursor is not None:
        if cursor == artist_id or cursor in seen:
            raise InvalidHierarchy("The parent chain would form a cycle.")
        seen.add(cursor)
        parent = await session.get(Artist, cursor)
        if parent is None:
            raise InvalidHierarchy(f"Parent artist {cursor} does not exist.")
        if cursor == parent_id and parent.kind not in (ArtistKind.group, ArtistKind.subunit):
            raise InvalidHierarchy("A parent must be a group or a sub-unit.")
        cursor = parent.parent_id


async def create_artist(session: AsyncSession, *, data: ArtistCreate) -> Artist:
    await get_agency(session, agency_id=data.agency_id)
    await _check_hierarchy(session, artist_id=None, kind=data.kind, parent_id=data.parent_id)
    artist = Artist(
        agency_id=data.agency_id,
        parent_id=data.parent_id,
        name=data.name,
        slug=data.slug or slugify(data.name),
        kind=data.kind,
    )
    session.add(artist)
    await commit_or_conflict(session, CatalogConflict, _DUPLICATE)
    return artist


async def update_artist(
    session: AsyncSession, cache: ResponseCache, *, artist_id: int, data: ArtistUpdate
) -> Artist:
    artist = await get_artist(session, artist_id=artist_id)
    updates = changes(data, nullable=frozenset({"parent_id"}))
    if "agency_id" in updates:
        await get_agency(session, agency_id=updates["agency_id"])
    await _check_hierarchy(
        session,
        artist_id=artist.id,
        kind=updates.get("kind", artist.kind),
        parent_id=updates.get("parent_id", artist.parent_id),
    )
    for field, value in updates.items():
        setattr(artist, field, value)
    await commit_or_conflict(session, CatalogConflict, _DUPLICATE)
    await session.refresh(artist)
    await invalidate_concerts_of(session, cache, artist_id=artist.id)
    return artist


async def delete_artist(session: AsyncSession, *, artist_id: int) -> None:
    artist = await get_artist(session, artist_id=artist_id)
    await session.delete(artist)
    await commit_or_conflict(session, CatalogConflict, "The artist still has members or concerts.")
