"""All SQL of the seat domain; bulk seat creation goes through PostgreSQL COPY."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.seat.models import Seat, SeatSection


async def has_sections(session: AsyncSession, concert_id: int) -> bool:
    found = await session.scalar(
        select(SeatSection.id).where(SeatSection.concert_id == concert_id).limit(1)
    )
    return found is not None


async def insert_sections(session: AsyncSession, rows: list[dict[str, object]]) -> list[int]:
    result = await session.execute(insert(SeatSection).returning(SeatSection.id), rows)
    return list(result.scalars().all())


async def copy_seats(session: AsyncSession, records: Iterator[tuple[int, int, str, int]]) -> int:
    """COPY (concert_id, section_id, row_label, number) rows in the session's transaction."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    status: str = await driver.copy_records_to_table(
        Seat.__tablename__,
        records=records,
        columns=["concert_id", "section_id", "row_label", "number"],
    )
    return int(status.split()[-1])


async def availability(
    session: AsyncSession, concert_id: int
) -> list[tuple[SeatSection, int, int, int]]:
    counts = (
        select(
            Seat.section_id,
            func.count().filter(Seat.status == "available").label("available"),
            func.count().filter(Seat.status == "held").label("held"),
            func.count().filter(Seat.status == "sold").label("sold"),
        )
        .where(Seat.concert_id == concert_id)
        .group_by(Seat.section_id)
        .subquery()
    )
    stmt = (
        select(SeatSection, counts.c.available, counts.c.held, counts.c.sold)
        .join(counts, counts.c.section_id == SeatSection.id)
        .where(SeatSection.concert_id == concert_id)
        .order_by(SeatSection.position)
    )
    return [(s, a, h, so) for s, a, h, so in (await session.execute(stmt)).all()]
