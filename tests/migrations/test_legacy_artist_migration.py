"""Revision 0002: legacy `concert.artist` strings become artist rows, backfilled in batches."""

from __future__ import annotations

import asyncio
import csv
import logging
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from app.core.migrate import downgrade, upgrade
from tests.fixtures.databases import connect, create_database, drop_database

MIGRATION_LOGGER = "ticket_rush.migrations"
DATA_DIR = Path(__file__).resolve().parents[2] / "app" / "data"

# Legacy spelling -> (canonical artist name, agency slug) expected after the upgrade.
LEGACY = {
    "BLACKPINK": ("BLACKPINK", "yg"),
    " blackpink ": ("BLACKPINK", "yg"),
    "BlackPink": ("BLACKPINK", "yg"),
    "BTS": ("BTS", "hybe"),
    "bts": ("BTS", "hybe"),
    "IU": ("IU", "edam"),
    "jennie": ("JENNIE", "yg"),
    "nct  127": ("NCT 127", "sm"),
    "Some Indie Band": ("Some Indie Band", "independent"),
    "some indie band ": ("Some Indie Band", "independent"),
    "Some\tIndie  Band": ("Some Indie Band", "independent"),
    "": ("Unknown artist", "independent"),
    "   ": ("Unknown artist", "independent"),
    None: ("Unknown artist", "independent"),
}


@pytest.fixture
def database_url() -> Iterator[str]:
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def sql(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    connection = connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def insert_legacy(url: str, artists: list[str | None]) -> None:
    sql(
        url,
        "INSERT INTO concert (title, artist, starts_at) "
        "SELECT 'Concert ' || n, artist, now() + n * interval '1 day' "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS legacy(artist, n) ORDER BY n",
        (artists,),
    )


def columns(url: str, table: str) -> dict[str, str]:
    rows = sql(
        url,
        "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = %s",
        (table,),
    )
    return dict(rows)


def batch_records(caplog: pytest.LogCaptureFixture, step: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "step", None) == step]


def test_upgrade_links_legacy_strings_and_downgrade_restores_them(database_url: str) -> None:
    upgrade(database_url, "0001")
    legacy = [*LEGACY, "BLACKPINK", "Some Indie Band"]
    insert_legacy(database_url, legacy)

    upgrade(database_url, "0002")

    linked = sql(
        database_url,
        "SELECT c.id, a.name, ag.slug FROM concert c "
        "JOIN artist a ON a.id = c.artist_id JOIN agency ag ON ag.id = a.agency_id ORDER BY c.id",
    )
    assert [(name, agency) for _id, name, agency in linked] == [LEGACY[s] for s in legacy]
    artists = sql(
        database_url,
        "SELECT a.name, a.kind, ag.slug, count(c.id) FROM artist a "
        "JOIN agency ag ON ag.id = a.agency_id LEFT JOIN concert c ON c.artist_id = a.id "
        "WHERE lower(a.name) IN ('blackpink', 'bts', 'iu', 'some indie band', 'unknown artist') "
        "GROUP BY a.id, ag.slug ORDER BY a.name",
    )
    assert artists == [
        ("BLACKPINK", "group", "yg", 4),
        ("BTS", "group", "hybe", 2),
        ("IU", "soloist", "edam", 1),
        ("Some Indie Band", "group", "independent", 4),
        ("Unknown artist", "soloist", "independent", 3),
    ]
    hierarchy = sql(
        database_url,
        "SELECT a.name, a.kind, p.name, a.slug FROM artist a JOIN artist p ON p.id = a.parent_id "
        "WHERE a.name IN ('JENNIE', 'ROSÉ', 'NCT 127') ORDER BY a.name",
    )
    assert hierarchy == [
        ("JENNIE", "member", "BLACKPINK", "jennie"),
        ("NCT 127", "subunit", "NCT", "nct-127"),
        ("ROSÉ", "member", "BLACKPINK", "rose"),
    ]
    assert sql(database_url, "SELECT slug FROM artist WHERE name = '(G)I-DLE'") == [("g-i-dle",)]
    agencies = {slug for (slug,) in sql(database_url, "SELECT slug FROM agency")}
    assert {"yg", "sm", "hybe", "jyp", "edam", "starship", "independent"} <= agencies

    concert_columns = columns(database_url, "concert")
    assert "artist" not in concert_columns
    assert concert_columns["artist_id"] == "NO"
    constraints = sql(
        database_url,
        "SELECT conname, contype, convalidated, confdeltype FROM pg_constraint "
        "WHERE conrelid = 'concert'::regclass AND contype IN ('f', 'c')",
    )
    assert constraints == [("fk_concert_artist_id_artist", "f", True, "r")]
    assert sql(
        database_url,
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_concert_artist_id'::regclass",
    ) == [(True,)]

    downgrade(database_url, "0001")

    restored = sql(database_url, "SELECT artist FROM concert ORDER BY id")
    expected = [None if LEGACY[s][0] == "Unknown artist" else LEGACY[s][0] for s in legacy]
    assert [artist for (artist,) in restored] == expected
    assert "artist_id" not in columns(database_url, "concert")
    assert columns(database_url, "agency") == {}
    assert columns(database_url, "artist") == {}


def test_backfill_runs_in_keyset_batches_over_id_gaps(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rows, batch_size = 50_000, 7_000
    spellings = ["TWICE", "twice ", " Indie Act 7", "indie act 7", "", None]
    names = ["TWICE", "TWICE", "Indie Act 7", "Indie Act 7", "Unknown artist", "Unknown artist"]
    expected: Counter[str | None] = Counter(names[g % 6] for g in range(rows))
    upgrade(database_url, "0001")
    # Ids jump by 3 and by 100,000 every 1,000 rows: batches must follow ids, not id ranges.
    sql(
        database_url,
        "INSERT INTO concert (id, title, artist, starts_at) "
        "SELECT g * 3 + (g / 1000) * 100000, 'Concert ' || g, (%s::text[])[1 + g %% 6], now() "
        "FROM generate_series(0, %s - 1) AS g",
        (spellings, rows),
    )
    caplog.set_level(logging.INFO, logger=MIGRATION_LOGGER)

    upgrade(database_url, "0002", batch_size=batch_size)

    batches = batch_records(caplog, "backfill batch")
    assert len(batches) == math.ceil(rows / batch_size)
    assert [r.__dict__["rows"] for r in batches] == [batch_size] * (rows // batch_size) + [
        rows % batch_size
    ]
    counts = dict(
        sql(
            database_url,
            "SELECT a.name, count(*) FROM concert c JOIN artist a ON a.id = c.artist_id "
            "GROUP BY a.name",
        )
    )
    assert counts == expected

    caplog.clear()
    downgrade(database_url, "0001", batch_size=batch_size)

    assert len(batch_records(caplog, "restore batch")) == math.ceil(rows / batch_size)
    restored = dict(sql(database_url, "SELECT artist, count(*) FROM concert GROUP BY artist"))
    expected[None] = expected.pop("Unknown artist")
    assert restored == expected


def test_concerts_inserted_during_backfill_are_linked_by_second_pass(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade(database_url, "0001")
    insert_legacy(database_url, ["BTS"] * 10)
    # Stands in for the old code creating a concert while the first pass runs: the new row's
    # artist was not among the strings the first pass mapped.
    sql(
        database_url,
        """
        CREATE FUNCTION old_code_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = 5 AND OLD.artist_id IS NULL AND NEW.artist_id IS NOT NULL THEN
                INSERT INTO concert (title, artist, starts_at) VALUES ('Late', 'Late Act', now());
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER old_code_insert AFTER UPDATE ON concert
            FOR EACH ROW EXECUTE FUNCTION old_code_insert();
        """,
    )
    caplog.set_level(logging.INFO, logger=MIGRATION_LOGGER)

    upgrade(database_url, "0002", batch_size=4)

    assert [r.__dict__["rows"] for r in batch_records(caplog, "backfill")] == [10, 1]
    assert sql(
        database_url,
        "SELECT a.name, ag.slug FROM concert c JOIN artist a ON a.id = c.artist_id "
        "JOIN agency ag ON ag.id = a.agency_id WHERE c.title = 'Late'",
    ) == [("Late Act", "independent")]


def test_interrupted_upgrade_resumes_where_it_stopped(database_url: str) -> None:
    upgrade(database_url, "0001")
    insert_legacy(database_url, ["BLACKPINK", "Indie Act", None] * 10)
    sql(
        database_url,
        """
        CREATE FUNCTION interrupt() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = 20 AND NEW.artist_id IS NOT NULL THEN
                RAISE EXCEPTION 'interrupted';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER interrupt BEFORE UPDATE ON concert
            FOR EACH ROW EXECUTE FUNCTION interrupt();
        """,
    )

    with pytest.raises(DBAPIError, match="interrupted"):
        upgrade(database_url, "0002", batch_size=5)

    assert sql(database_url, "SELECT version_num FROM alembic_version") == [("0001",)]
    assert sql(database_url, "SELECT count(artist_id) FROM concert") == [(15,)]
    sql(database_url, "DROP TRIGGER interrupt ON concert")
    insert_legacy(database_url, ["Written Meanwhile"])

    upgrade(database_url, "0002", batch_size=5)

    assert sql(database_url, "SELECT version_num FROM alembic_version") == [("0002",)]
    counts = sql(
        database_url,
        "SELECT a.name, count(*) FROM concert c JOIN artist a ON a.id = c.artist_id "
        "GROUP BY a.name ORDER BY a.name",
    )
    assert counts == [
        ("BLACKPINK", 10),
        ("Indie Act", 10),
        ("Unknown artist", 10),
        ("Written Meanwhile", 1),
    ]
    assert sql(database_url, "SELECT count(*) FROM agency WHERE slug = 'yg'") == [(1,)]


async def test_fresh_database_is_seeded_from_a_worker_thread(database_url: str) -> None:
    # Callers inside an event loop run the sync API in a thread; env.py runs its own loop there.
    await asyncio.to_thread(upgrade, database_url, "0002")

    with (DATA_DIR / "agencies.csv").open(encoding="utf-8") as file:
        agencies = sum(1 for _ in csv.DictReader(file))
    with (DATA_DIR / "known_artists.csv").open(encoding="utf-8") as file:
        known_artists = sum(1 for _ in csv.DictReader(file))
    assert sql(database_url, "SELECT count(*) FROM agency") == [(agencies,)]
    # No legacy rows, so no placeholder artist either.
    assert sql(database_url, "SELECT count(*) FROM artist") == [(known_artists,)]
