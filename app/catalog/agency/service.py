from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.agency.models import Agency
from app.catalog.agency.schemas import AgencyCreate, AgencyUpdate
from app.catalog.common import changes, commit_or_conflict, keyset_page, slugify
from app.catalog.errors import AgencyNotFound, CatalogConflict
from app.core.cache import ResponseCache


async def get_agency(session: AsyncSession, *, agency_id: int) -> Agency:
    agency = await session.get(Agency, agency_id)
    if agency is None:
        raise AgencyNotFound(f"No agency with id {agency_id}.")
    return agency


async def list_agencies(
    session: AsyncSession, *, country: str | None, cursor: str | None, limit: int
) -> tuple[list[Agency], str | None]:
    stmt = select(Agency)
    if country:
        stmt = stmt.where(Agency.country == country)
    return await keyset_page(
        session, stmt, order=[Agency.id], cursor=cursor, limit=limit, key_of=lambda a: [a.id]
    )


async def create_agency(session: AsyncSession, *, data: AgencyCreate) -> Agency:
    agency = Agency(name=data.name, slug=data.slug or slugify(data.name), country=data.country)
    session.add(agency)
    await commit_or_conflict(session, CatalogConflict, "An agency with this slug already exists.")
    return agency


async def update_agency(
    session: AsyncSession, cache: ResponseCache, *, agency_id: int, data: AgencyUpdate
) -> Agency:
    agency = await get_agency(session, agency_id=agency_id)
    for field, value in changes(data, nullable=frozenset({"country"})).items():
        setattr(agency, field, value)
    await commit_or_conflict(session, CatalogConflict, "An agency with this slug already exists.")
    await session.refresh(agency)
    await cache.invalidate("concerts")
    return agency


async def delete_agency(session: AsyncSession, *, agency_id: int) -> None:
    agency = await get_agency(session, agency_id=agency_id)
    await session.delete(agency)
    await commit_or_conflict(session, CatalogConflict, "The agency still has artists.")
