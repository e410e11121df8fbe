"""All SQL of the concert domain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from app.catalog.artist.models import Artist
from app.catalog.concert.models import Concert


def _with_refs() -> Select[Concert]:
    # One statement: the cache test counts exactly one query per cold load.
    return select(Concert).options(joinedload(Concert.artist), joinedload(Concert.venue))


async def load_concert(session: AsyncSession, concert_id: int) -> Concert | None:
    concert: Concert | None = await session.scalar(_with_refs().where(Concert.id == concert_id))
    return concert


async def lock_concert(session: AsyncSession, concert_id: int) -> Concert | None:
    return await session.scalar(select(Concert).where(Concert.id == concert_id).with_for_update())


def filtered(
    *,
    agency_id: int | None,
    artist_id: int | None,
    venue_id: int | None,
    status: str | None,
    starts_after: datetime | None,
    starts_before: datetime | None,
    q: str | None = None,
) -> Select[Concert]:
    stmt = _with_refs()
    if q is not None:
        # Case-insensitive substring of the title or the artist's name; autoescape keeps the
        # fan's % and _ literal. A catalog of thousands needs no trigram index yet.
        stmt = stmt.where(
            Concert.title.icontains(q, autoescape=True)
            | Concert.artist_id.in_(
                select(Artist.id).where(Artist.name.icontains(q, autoescape=True))
            )
        )
    if agency_id is not None:
        stmt = stmt.where(
            Concert.artist_id.in_(select(Artist.id).where(Artist.agency_id == agency_id))
        )
    if artist_id is not None:
        stmt = stmt.where(Concert.artist_id == artist_id)
    if venue_id is not None:
        stmt = stmt.where(Concert.venue_id == venue_id)
    if status is not None:
        stmt = stmt.where(Concert.status == status)
    if starts_after is not None:
        stmt = stmt.where(Concert.starts_at >= starts_after)
    if starts_before is not None:
        stmt = stmt.where(Concert.starts_at < starts_before)
    return stmt


async def concert_ids_of(
    session: AsyncSession, *, artist_id: int | None = None, venue_id: int | None = None
) -> list[int]:
    stmt = select(Concert.id)
    if artist_id is not None:
        stmt = stmt.where(Concert.artist_id == artist_id)
    if venue_id is not None:
        stmt = stmt.where(Concert.venue_id == venue_id)
    return list((await session.scalars(stmt)).all())
