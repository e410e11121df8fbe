"""`ticket-rush seed`: agencies, artists, venues and concerts with seat maps, idempotently."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from app.catalog.agency.models import Agency
from app.catalog.artist.models import Artist
from app.catalog.common import slugify
from app.catalog.concert.models import Concert
from app.catalog.concert.schemas import ConcertCreate
from app.catalog.concert.service import create_concert
from app.catalog.seat.repository import has_sections
from app.catalog.seat.schemas import SeatMapGenerate, SectionSpec
from app.catalog.seat.service import generate_seat_map
from app.catalog.venue.models import Venue
from app.core.state import AppState

DATA = Path(__file__).parent / "data"

VENUES = [
    ("KSPO Dome", "Seoul", "KR", 15_000),
    ("Gocheok Sky Dome", "Seoul", "KR", 25_000),
    ("Tokyo Dome", "Tokyo", "JP", 55_000),
]

# (artist name, venue index, days from now, sections)
CONCERTS = [
    (
        "BLACKPINK",
        1,
        30,
        [("VIP", 10, 40, 242_000), ("R", 20, 50, 198_000), ("S", 30, 60, 165_000)],
    ),
    ("BTS", 2, 45, [("VIP", 20, 50, 220_000), ("R", 40, 60, 176_000), ("S", 40, 80, 143_000)]),
    ("IU", 0, 60, [("VIP", 8, 30, 176_000), ("R", 12, 40, 154_000)]),
    ("TWICE", 0, 75, [("VIP", 8, 30, 176_000), ("R", 16, 40, 154_000)]),
]


@dataclass
class SeedReport:
    agencies: int = 0
    artists: int = 0
    venues: int = 0
    concerts: int = 0
    seats: int = 0


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


async def seed(state: AppState) -> SeedReport:
    report = SeedReport()
    async with state.sessionmaker() as session:
        agencies = {a.slug: a for a in (await session.scalars(select(Agency))).all()}
        for row in _rows("agencies.csv"):
            if row["slug"] not in agencies:
                agency = Agency(name=row["name"], slug=row["slug"], country=row["country"] or None)
                session.add(agency)
                agencies[row["slug"]] = agency
                report.agencies += 1
        await session.flush()

        artists = {a.name.lower(): a for a in (await session.scalars(select(Artist))).all()}
        pending = _rows("known_artists.csv")
        # Parents first: a member row may come before its group in the file.
        for _ in range(3):
            waiting = []
            for row in pending:
                if row["name"].lower() in artists:
                    continue
                parent = artists.get(row["parent_name"].lower()) if row["parent_name"] else None
                if row["parent_name"] and parent is None:
                    waiting.append(row)
                    continue
                artist = Artist(
                    name=row["name"],
                    slug=slugify(row["name"]),
                    kind=row["kind"],
                    agency_id=agencies[row["agency_slug"]].id,
                    parent_id=parent.id if parent else None,
                )
                session.add(artist)
                await session.flush()
                artists[row["name"].lower()] = artist
                report.artists += 1
            pending = waiting

        venues = {v.name: v for v in (await session.scalars(select(Venue))).all()}
        for name, city, country, capacity in VENUES:
            if name not in venues:
                venues[name] = Venue(name=name, city=city, country=country, capacity=capacity)
                session.add(venues[name])
                report.venues += 1
        await session.commit()

        base = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
        for artist_name, venue_index, days, sections in CONCERTS:
            artist = artists[artist_name.lower()]
            venue = venues[VENUES[venue_index][0]]
            title = f"{artist.name} World Tour — {venue.city}"
            concert = await session.scalar(select(Concert).where(Concert.title == title))
            if concert is None:
                created = await create_concert(
                    session,
                    state.cache,
                    data=ConcertCreate(
                        title=title,
                        artist_id=artist.id,
                        venue_id=venue.id,
                        starts_at=base + timedelta(days=days),
                    ),
                )
                concert_id = created.id
                report.concerts += 1
            else:
                concert_id = concert.id
            if not await has_sections(session, concert_id):
                summary = await generate_seat_map(
                    session,
                    state.cache,
                    concert_id=concert_id,
                    spec=SeatMapGenerate(
                        sections=[
                            SectionSpec(name=n, rows=r, seats_per_row=s, price=p)
                            for n, r, s, p in sections
                        ]
                    ),
                )
                report.seats += summary.total
    return report
