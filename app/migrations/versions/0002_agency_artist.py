"""agency_artist: agencies and artists; the concert's plain `artist` string becomes `artist_id`.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-06

Safe on a large, live `concert` table: apart from catalog-only ALTERs, no step holds a lock that
blocks concert readers or writers for longer than one backfill batch (`-x batch_size=N`, default
20,000 rows). Concerts the old code inserts during the backfill are linked by a second pass; once
the NOT NULL check is in place the old code can no longer insert concerts (it does not know
`artist_id`), so the new code ships with this revision. An `artist` string the old code edits
after its row was linked is not re-linked.

An interrupted upgrade can simply be run again: the catalog tables were created and seeded in one
committed transaction and are kept, only concerts still without `artist_id` are backfilled, and
the constraint steps are redone from scratch.
"""

import csv
import logging
import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("ticket_rush.migrations")

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DEFAULT_BATCH_SIZE = 20_000
INDEPENDENT_SLUG = "independent"
# Empty and NULL legacy strings (and the string itself, in any case) all point here; the
# downgrade turns it back into NULL.
PLACEHOLDER_NAME = "Unknown artist"
NOT_NULL_CHECK = "ck_concert_artist_id_not_null"

# Display spelling of a legacy string: whitespace runs become one space, ends are trimmed.
# Computed by PostgreSQL, and compared with its lower() like uq_artist_name_lower, so "the same
# artist" here is exactly what the unique index will think.
LEGACY_GROUPS = r"""
    SELECT raw, n, first_id, spelling, lower(spelling) AS key
    FROM (
        SELECT coalesce(artist, '') AS raw, count(*) AS n, min(id) AS first_id
        FROM concert WHERE artist_id IS NULL GROUP BY 1
    ) AS legacy,
    LATERAL (SELECT btrim(regexp_replace(raw, '\s+', ' ', 'g')) AS spelling) AS normalized
"""

# Keyset batches: a batch ends at the `size`-th next unlinked id, so id gaps never make one
# empty or oversized, and it updates one primary-key range (twice as fast as joining the ids
# back). Each batch is its own autocommitted transaction: row locks last one batch only.
LINK_BATCH = """
    WITH batch AS (
        SELECT max(id) AS last_id FROM (
            SELECT id FROM concert WHERE id > :after AND artist_id IS NULL ORDER BY id LIMIT :size
        ) AS ids
    ), linked AS (
        UPDATE concert AS c SET artist_id = m.artist_id
        FROM batch AS b, concert_artist_map AS m
        WHERE c.id > :after AND c.id <= b.last_id AND c.artist_id IS NULL
          AND m.raw = coalesce(c.artist, '')
        RETURNING 1
    )
    SELECT (SELECT last_id FROM batch), (SELECT count(*) FROM linked)
"""

RESTORE_BATCH = """
    WITH batch AS (
        SELECT max(id) AS last_id FROM (
            SELECT id FROM concert WHERE id > :after ORDER BY id LIMIT :size
        ) AS ids
    ), restored AS (
        UPDATE concert AS c SET artist = nullif(a.name, :placeholder)
        FROM batch AS b, artist AS a
        WHERE c.id > :after AND c.id <= b.last_id AND a.id = c.artist_id
        RETURNING 1
    )
    SELECT (SELECT last_id FROM batch), (SELECT count(*) FROM restored)
"""


def upgrade() -> None:
    batch_size = _batch_size()
    if not sa.inspect(op.get_bind()).has_table("agency"):
        _create_catalog_tables()
        _seed_catalog()
    with op.get_context().autocommit_block():
        # Nullable without default: a catalog-only change, the ACCESS EXCLUSIVE lock is momentary.
        _timed(
            "add concert.artist_id", "ALTER TABLE concert ADD COLUMN IF NOT EXISTS artist_id bigint"
        )
        _link_concerts(batch_size)
        # NOT VALID skips the scan; from now on no row can be written without an artist, so the
        # second pass catches the last concerts the old code inserted during the first one.
        _timed(
            "add NOT NULL check",
            f"ALTER TABLE concert DROP CONSTRAINT IF EXISTS {NOT_NULL_CHECK}, "
            f"ADD CONSTRAINT {NOT_NULL_CHECK} CHECK (artist_id IS NOT NULL) NOT VALID",
        )
        _link_concerts(batch_size)
        # VALIDATE scans under SHARE UPDATE EXCLUSIVE: reads and writes carry on meanwhile.
        _timed(
            "validate NOT NULL check", f"ALTER TABLE concert VALIDATE CONSTRAINT {NOT_NULL_CHECK}"
        )
        # Built after the backfill so the batches did not maintain it. An interrupted
        # CONCURRENTLY build leaves an invalid index behind, hence the drop first.
        _timed("drop stale index", "DROP INDEX CONCURRENTLY IF EXISTS ix_concert_artist_id")
        _timed(
            "create index",
            "CREATE INDEX CONCURRENTLY ix_concert_artist_id ON concert (artist_id)",
        )
        _timed(
            "add foreign key",
            "ALTER TABLE concert DROP CONSTRAINT IF EXISTS fk_concert_artist_id_artist, "
            "ADD CONSTRAINT fk_concert_artist_id_artist FOREIGN KEY (artist_id) "
            "REFERENCES artist (id) ON DELETE RESTRICT NOT VALID",
        )
        _timed(
            "validate foreign key",
            "ALTER TABLE concert VALIDATE CONSTRAINT fk_concert_artist_id_artist",
        )
    # One short ACCESS EXCLUSIVE lock, committed with the version stamp: SET NOT NULL trusts the
    # validated check instead of scanning (PostgreSQL >= 12); dropping a column is catalog-only.
    _timed("set NOT NULL", "ALTER TABLE concert ALTER COLUMN artist_id SET NOT NULL")
    _timed("drop NOT NULL check", f"ALTER TABLE concert DROP CONSTRAINT {NOT_NULL_CHECK}")
    _timed("drop concert.artist", "ALTER TABLE concert DROP COLUMN artist")


def downgrade() -> None:
    batch_size = _batch_size()
    with op.get_context().autocommit_block():
        _timed(
            "add concert.artist", "ALTER TABLE concert ADD COLUMN IF NOT EXISTS artist varchar(200)"
        )
        first_id = op.get_bind().execute(sa.text("SELECT min(id) FROM concert")).scalar_one()
        if first_id is not None:
            _run_batches(
                "restore", RESTORE_BATCH, first_id, batch_size, placeholder=PLACEHOLDER_NAME
            )
    _timed("drop concert.artist_id", "ALTER TABLE concert DROP COLUMN artist_id")
    op.drop_table("artist")
    op.drop_table("agency")


def _batch_size() -> int:
    size = int(context.get_x_argument(as_dictionary=True).get("batch_size", DEFAULT_BATCH_SIZE))
    if size < 1:
        raise ValueError(f"batch_size must be positive, got {size}")
    return size


def _timed(step: str, sql: str) -> None:
    started = time.perf_counter()
    op.get_bind().execute(sa.text(sql))
    duration_ms = (time.perf_counter() - started) * 1000
    log.info("%s: %.0f ms", step, duration_ms, extra={"step": step, "duration_ms": duration_ms})


def _timestamps() -> Iterator[sa.Column[object]]:
    for name in ("created_at", "updated_at"):
        yield sa.Column(
            name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        )


def _create_catalog_tables() -> None:
    op.create_table(
        "agency",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency")),
        sa.UniqueConstraint("slug", name=op.f("uq_agency_slug")),
    )
    op.create_table(
        "artist",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("agency_id", sa.BigInteger(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="group", nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artist")),
        sa.UniqueConstraint("slug", name=op.f("uq_artist_slug")),
        sa.CheckConstraint(
            "kind IN ('group', 'soloist', 'member', 'subunit')", name=op.f("ck_artist_kind")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agency.id"],
            name=op.f("fk_artist_agency_id_agency"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["artist.id"],
            name=op.f("fk_artist_parent_id_artist"),
            ondelete="RESTRICT",
        ),
    )
    op.create_index(op.f("ix_artist_agency_id"), "artist", ["agency_id"])
    op.create_index(op.f("ix_artist_parent_id"), "artist", ["parent_id"])
    op.create_index(op.f("uq_artist_name_lower"), "artist", [sa.text("lower(name)")], unique=True)


def _read_csv(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _slug(name: str, taken: set[str]) -> str:
    """Lower-case ASCII letters and digits, '-' between words, a numeric suffix if taken."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    # Room for a suffix within varchar(200); names without any latin letter or digit (e.g. only
    # Hangul) still need a slug.
    base = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:190] or "artist"
    slug, suffix = base, 2
    while slug in taken:
        slug, suffix = f"{base}-{suffix}", suffix + 1
    taken.add(slug)
    return slug


def _seed_catalog() -> None:
    bind = op.get_bind()
    agency_ids: dict[str, int] = {}
    for row in _read_csv("agencies.csv"):
        agency_ids[row["slug"]] = bind.execute(
            sa.text(
                "INSERT INTO agency (name, slug, country) VALUES (:name, :slug, :country) "
                "RETURNING id"
            ),
            {"name": row["name"], "slug": row["slug"], "country": row["country"] or None},
        ).scalar_one()
    taken: set[str] = set()
    # The file lists every parent before its members and sub-units.
    artist_ids: dict[str, int] = {}
    for row in _read_csv("known_artists.csv"):
        parent = row["parent_name"]
        artist_ids[row["name"]] = bind.execute(
            sa.text(
                "INSERT INTO artist (agency_id, parent_id, name, slug, kind) "
                "VALUES (:agency_id, :parent_id, :name, :slug, :kind) RETURNING id"
            ),
            {
                "agency_id": agency_ids[row["agency_slug"]],
                "parent_id": artist_ids[parent] if parent else None,
                "name": row["name"],
                "slug": _slug(row["name"], taken),
                "kind": row["kind"],
            },
        ).scalar_one()


def _link_concerts(batch_size: int) -> None:
    """Set `artist_id` of every concert lacking one from its legacy `artist` string."""
    bind = op.get_bind()
    groups = bind.execute(sa.text(LEGACY_GROUPS)).all()
    if not groups:
        return
    placeholder_key = PLACEHOLDER_NAME.lower()
    spellings: defaultdict[str, Counter[str]] = defaultdict(Counter)
    key_of_raw: dict[str, str] = {}
    for raw, n, _first_id, spelling, key in groups:
        key_of_raw[raw] = key or placeholder_key
        spellings[key or placeholder_key][spelling] += n

    artist_ids = _artist_ids_by_key()
    missing = [key for key in spellings if key not in artist_ids]
    if missing:
        independent_id = bind.execute(
            sa.text("SELECT id FROM agency WHERE slug = :slug"), {"slug": INDEPENDENT_SLUG}
        ).scalar_one()
        taken = set(bind.execute(sa.text("SELECT slug FROM artist")).scalars())
        new_artists = []
        for key in missing:
            # Unknown acts are named by their most frequent spelling, ties by the first in order.
            name = min(spellings[key].items(), key=lambda item: (-item[1], item[0]))[0]
            kind = "group"
            if key == placeholder_key:
                name, kind = PLACEHOLDER_NAME, "soloist"
            new_artists.append(
                {
                    "agency_id": independent_id,
                    "name": name,
                    "slug": _slug(name, taken),
                    "kind": kind,
                }
            )
        bind.execute(
            sa.text(
                "INSERT INTO artist (agency_id, name, slug, kind) "
                "VALUES (:agency_id, :name, :slug, :kind)"
            ),
            new_artists,
        )
        artist_ids = _artist_ids_by_key()

    # A temp table (session-local, no WAL) is sent once and gives every batch a hash join
    # instead of re-normalizing strings row by row.
    bind.execute(
        sa.text(
            "CREATE TEMP TABLE IF NOT EXISTS concert_artist_map "
            "(raw text PRIMARY KEY, artist_id bigint NOT NULL)"
        )
    )
    bind.execute(sa.text("TRUNCATE concert_artist_map"))
    bind.execute(
        sa.text("INSERT INTO concert_artist_map (raw, artist_id) VALUES (:raw, :artist_id)"),
        [{"raw": raw, "artist_id": artist_ids[key]} for raw, key in key_of_raw.items()],
    )
    bind.execute(sa.text("ANALYZE concert_artist_map"))
    first_id = min(first for _raw, _n, first, _spelling, _key in groups)
    _run_batches("backfill", LINK_BATCH, first_id, batch_size)


def _artist_ids_by_key() -> dict[str, int]:
    rows = op.get_bind().execute(sa.text("SELECT lower(name), id FROM artist"))
    return {key: artist_id for key, artist_id in rows}


def _run_batches(step: str, sql: str, first_id: int, batch_size: int, **params: object) -> None:
    bind = op.get_bind()
    after, batches, total = first_id - 1, 0, 0
    started = time.perf_counter()
    while True:
        batch_started = time.perf_counter()
        last_id, rows = bind.execute(
            sa.text(sql), {"after": after, "size": batch_size, **params}
        ).one()
        if last_id is None:
            break
        duration_ms = (time.perf_counter() - batch_started) * 1000
        batches, total, after = batches + 1, total + rows, last_id
        log.info(
            "%s batch %d: %d rows up to id %d in %.0f ms",
            step,
            batches,
            rows,
            last_id,
            duration_ms,
            extra={"step": f"{step} batch", "rows": rows, "duration_ms": duration_ms},
        )
    duration_ms = (time.perf_counter() - started) * 1000
    log.info(
        "%s: %d rows in %d batches, %.0f ms",
        step,
        total,
        batches,
        duration_ms,
        extra={"step": step, "rows": total, "batches": batches, "duration_ms": duration_ms},
    )
