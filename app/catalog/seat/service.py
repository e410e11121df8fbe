"""Seat maps: bulk generation and availability (cached, invalidated on every change)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.catalog.common import keyset_page
from app.catalog.concert import repository as concert_repository
from app.catalog.errors import ConcertNotFound, InvalidStatusTransition, SeatMapExists
from app.catalog.seat import repository
from app.catalog.seat.models import Seat, SeatStatus
from app.catalog.seat.schemas import SeatMapGenerate, SeatMapSummary, SectionAvailability
from app.catalog.venue.models import Venue
from app.core.cache import CachedResponse, ResponseCache
from app.core.db import allow_bulk_statements
from app.core.problems import ProblemError


class CapacityExceeded(ProblemError):
    status = 422
    slug = "venue-capacity-exceeded"
    title = "The seat map exceeds the venue's capacity"


def availability_namespace(concert_id: int) -> str:
    # Separate from the concert page: every hold changes availability, not the concert.
    return f"availability:{concert_id}"


async def invalidate_availability(cache: ResponseCache, concert_id: int) -> None:
    """Call after any seat or stock change so the cached counts stay exact."""
    await cache.invalidate(availability_namespace(concert_id))


def row_label(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA, like printed seat maps."""
    label = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        label = chr(65 + rem) + label
    return label


async def generate_seat_map(
    session: AsyncSession, cache: ResponseCache, *, concert_id: int, spec: SeatMapGenerate
) -> SeatMapSummary:
    """Create all sections and seats of a draft concert in one transaction (COPY for seats)."""
    concert = await concert_repository.lock_concert(session, concert_id)
    if concert is None:
        raise ConcertNotFound(f"No concert with id {concert_id}.")
    if concert.status != "draft":
        raise InvalidStatusTransition(
            "Seat maps can only be generated while the concert is a draft."
        )
    if await repository.has_sections(session, concert_id):
        raise SeatMapExists(f"Concert {concert_id} already has a seat map.")
    total = sum(s.rows * s.seats_per_row for s in spec.sections)
    if concert.venue_id is not None:
        venue = await session.get(Venue, concert.venue_id)
        if venue is not None and venue.capacity is not None and total > venue.capacity:
            raise CapacityExceeded(f"{total} seats exceed the venue capacity of {venue.capacity}.")
    section_ids = await repository.insert_sections(
        session,
        [
            {
                "concert_id": concert_id,
                "name": s.name,
                "price_tier": s.price_tier or s.name,
                "price_minor": s.price,
                "currency": spec.currency,
                "position": i,
            }
            for i, s in enumerate(spec.sections)
        ],
    )

    def records() -> Iterator[tuple[int, int, str, int]]:
        for section_id, s in zip(section_ids, spec.sections, strict=True):
            for r in range(s.rows):
                label = row_label(r)
                for n in range(1, s.seats_per_row + 1):
                    yield (concert_id, section_id, label, n)

    await allow_bulk_statements(session)
    await repository.copy_seats(session, records())
    await session.commit()
    await invalidate_availability(cache, concert_id)
    return await _summary(session, concert_id)


async def _summary(session: AsyncSession, concert_id: int) -> SeatMapSummary:
    rows = await repository.availability(session, concert_id)
    sections = [
        SectionAvailability(
            section_id=s.id,
            name=s.name,
            price_tier=s.price_tier,
            price_minor=s.price_minor,
            currency=s.currency,
            total=a + h + so,
            available=a,
            held=h,
            sold=so,
        )
        for s, a, h, so in rows
    ]
    return SeatMapSummary(
        concert_id=concert_id,
        total=sum(s.total for s in sections),
        available=sum(s.available for s in sections),
        sections=sections,
    )


async def availability_cached(
    sessions: async_sessionmaker[AsyncSession], cache: ResponseCache, *, concert_id: int
) -> CachedResponse:
    """Per-section counts; exact because every seat change invalidates the namespace."""

    async def load() -> bytes | None:
        async with sessions() as session:
            if await concert_repository.load_concert(session, concert_id) is None:
                return None
            return (await _summary(session, concert_id)).model_dump_json().encode()

    cached = await cache.get_or_load(
        "seat_availability", availability_namespace(concert_id), "summary", load
    )
    if cached.body is None:
        raise ConcertNotFound(f"No concert with id {concert_id}.")
    return cached


async def list_seats(
    session: AsyncSession,
    *,
    concert_id: int,
    status: SeatStatus | None,
    section_id: int | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Seat], str | None]:
    if await concert_repository.load_concert(session, concert_id) is None:
        raise ConcertNotFound(f"No concert with id {concert_id}.")
    stmt = select(Seat).where(Seat.concert_id == concert_id)
    if status is not None:
        stmt = stmt.where(Seat.status == status)
    if section_id is not None:
        stmt = stmt.where(Seat.section_id == section_id)
    return await keyset_page(
        session, stmt, order=[Seat.id], cursor=cursor, limit=limit, key_of=lambda s: [s.id]
    )
