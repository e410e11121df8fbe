from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.common import changes, commit_or_conflict, keyset_page
from app.catalog.concert.service import invalidate_concerts_of
from app.catalog.errors import CatalogConflict, VenueNotFound
from app.catalog.venue.models import Venue
from app.catalog.venue.schemas import VenueCreate, VenueUpdate
from app.core.cache import ResponseCache


async def get_venue(session: AsyncSession, *, venue_id: int) -> Venue:
    venue = await session.get(Venue, venue_id)
    if venue is None:
        raise VenueNotFound(f"No venue with id {venue_id}.")
    return venue


async def list_venues(
    session: AsyncSession, *, country: str | None, cursor: str | None, limit: int
) -> tuple[list[Venue], str | None]:
    stmt = select(Venue)
    if country:
        stmt = stmt.where(Venue.country == country)
    return await keyset_page(
        session, stmt, order=[Venue.id], cursor=cursor, limit=limit, key_of=lambda v: [v.id]
    )


async def create_venue(session: AsyncSession, *, data: VenueCreate) -> Venue:
    venue = Venue(**data.model_dump())
    session.add(venue)
    await commit_or_conflict(session, CatalogConflict, "The venue conflicts with another.")
    return venue


async def update_venue(
    session: AsyncSession, cache: ResponseCache, *, venue_id: int, data: VenueUpdate
) -> Venue:
    venue = await get_venue(session, venue_id=venue_id)
    for field, value in changes(data, nullable=frozenset({"capacity"})).items():
        setattr(venue, field, value)
    await commit_or_conflict(session, CatalogConflict, "The venue conflicts with another.")
    await session.refresh(venue)
    await invalidate_concerts_of(session, cache, venue_id=venue.id)
    return venue


async def delete_venue(session: AsyncSession, *, venue_id: int) -> None:
    venue = await get_venue(session, venue_id=venue_id)
    await session.delete(venue)
    await commit_or_conflict(session, CatalogConflict, "The venue still has concerts.")
