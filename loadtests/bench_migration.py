"""Benchmark revision 0002 (legacy artist strings -> artist_id) on a large legacy concert table.

    python loadtests/bench_migration.py --rows 1000000 --out reports/catalog

Creates a throwaway database, fills the legacy schema (0001) with messy artist strings, times the
batched 0001 -> 0002 upgrade and, as the physical-limit reference in the same run, one
single-statement UPDATE that links a copy of the table (fast, but every row stays locked until
it commits). A probe writes one random concert every few milliseconds during both and records
how long its writes had to wait: the lock a fan-facing writer would actually feel.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script from anywhere: the project root holds the `app` and `tests` packages.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import psycopg2  # noqa: E402

from app.core.migrate import upgrade  # noqa: E402
from tests.fixtures.databases import connect, create_database, drop_database  # noqa: E402

MIGRATION_LOGGER = "ticket_rush.migrations"
DEFAULT_BATCH_SIZE = 20_000
KNOWN_ARTISTS = PROJECT_ROOT / "app" / "data" / "known_artists.csv"

INSERT_LEGACY = """
    INSERT INTO concert (title, artist, starts_at)
    SELECT 'Concert ' || g,
           CASE g %% 50
               WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN '   '
               ELSE (%(spellings)s::text[])[1 + (g * 7919) %% %(distinct)s]
           END,
           timestamptz '2026-01-01 00:00Z' + g * interval '1 hour'
    FROM generate_series(1::bigint, %(rows)s) AS g
"""

# The reference mapping is derived independently of the migration's Python code, so comparing
# both results also checks the migration's grouping.
REFERENCE_MAP = r"""
    CREATE TABLE reference_map AS
    SELECT legacy.raw, a.id AS artist_id
    FROM (SELECT DISTINCT coalesce(artist, '') AS raw FROM concert_ref) AS legacy
    JOIN artist AS a ON lower(a.name) = coalesce(
        nullif(lower(btrim(regexp_replace(legacy.raw, '\s+', ' ', 'g'))), ''), 'unknown artist'
    )
"""

REFERENCE_UPDATE = """
    UPDATE concert_ref AS r SET artist_id = m.artist_id
    FROM reference_map AS m WHERE m.raw = coalesce(r.artist, '')
"""


class StepRecorder(logging.Handler):
    """Keeps the migration's step and batch timings (records carrying a `step` attribute)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.steps: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "step" in record.__dict__:
            self.steps.append(
                {
                    k: record.__dict__[k]
                    for k in ("step", "duration_ms", "rows", "batches")
                    if k in record.__dict__
                }
            )


class WriteProbe(threading.Thread):
    """Updates one random row every few ms and records how long each write took."""

    def __init__(self, url: str, table: str, max_id: int) -> None:
        super().__init__(daemon=True)
        self.url, self.table, self.max_id = url, table, max_id
        self.latencies_ms: list[float] = []
        self.errors = 0
        self.done = threading.Event()

    def run(self) -> None:
        connection = connect(self.url)
        connection.autocommit = True
        # The table name is one of two constants of this script, never user input.
        statement = f"UPDATE {self.table} SET title = title WHERE id = %s"
        try:
            with connection.cursor() as cursor:
                while not self.done.is_set():
                    started = time.perf_counter()
                    try:
                        cursor.execute(statement, (random.randint(1, self.max_id),))
                    except psycopg2.Error:
                        self.errors += 1
                    self.latencies_ms.append((time.perf_counter() - started) * 1000)
                    time.sleep(0.005)
        finally:
            connection.close()

    def stop(self) -> dict[str, float | int]:
        self.done.set()
        self.join()
        ordered = sorted(self.latencies_ms)
        return {
            "writes": len(ordered),
            "errors": self.errors,
            "p99_ms": round(ordered[int(len(ordered) * 0.99)], 1) if ordered else 0.0,
            "max_ms": round(ordered[-1], 1) if ordered else 0.0,
        }


def spellings(distinct: int) -> list[str]:
    """About `distinct` legacy spellings: known acts and made-up ones, in case/space variants."""
    with KNOWN_ARTISTS.open(encoding="utf-8") as file:
        bases = [row["name"] for row in csv.DictReader(file)]
    result: dict[str, None] = {}
    index = 0
    while len(result) < distinct:
        base = bases[index] if index < len(bases) else f"Indie Act {index:05d}"
        for variant in (base, base.lower(), base.upper(), f"  {base} "):
            result[variant] = None
        index += 1
    return list(result)[:distinct]


def execute(url: str, statement: str, params: Any = None) -> tuple[list[tuple[Any, ...]], int]:
    connection = connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            rows = cursor.fetchall() if cursor.description else []
            return rows, cursor.rowcount
    finally:
        connection.close()


def scalar(url: str, statement: str) -> Any:
    return execute(url, statement)[0][0][0]


def run(rows: int, batch_size: int, distinct: int) -> dict[str, Any]:
    url = create_database("tr_bench")
    try:
        upgrade(url, "0001")
        started = time.perf_counter()
        execute(
            url,
            INSERT_LEGACY,
            {"spellings": spellings(distinct), "distinct": distinct, "rows": rows},
        )
        execute(url, "CREATE TABLE concert_ref (LIKE concert INCLUDING ALL)")
        execute(url, "INSERT INTO concert_ref SELECT * FROM concert")
        # Same starting point for both: hint bits set, statistics fresh.
        execute(url, "VACUUM ANALYZE concert, concert_ref")
        print(f"loaded {rows:,} legacy rows twice in {time.perf_counter() - started:.1f} s")

        recorder = StepRecorder()
        logger = logging.getLogger(MIGRATION_LOGGER)
        logger.setLevel(logging.INFO)
        logger.addHandler(recorder)
        probe = WriteProbe(url, "concert", rows)
        probe.start()
        started = time.perf_counter()
        upgrade(url, "0002", batch_size=batch_size)
        migration_s = time.perf_counter() - started
        migration_probe = probe.stop()
        logger.removeHandler(recorder)

        execute(url, REFERENCE_MAP)
        execute(url, "ALTER TABLE concert_ref ADD COLUMN artist_id bigint")
        execute(url, "ANALYZE reference_map")
        probe = WriteProbe(url, "concert_ref", rows)
        probe.start()
        started = time.perf_counter()
        _, reference_rows = execute(url, REFERENCE_UPDATE)
        reference_s = time.perf_counter() - started
        reference_probe = probe.stop()

        batches = [s for s in recorder.steps if s["step"] == "backfill batch"]
        backfill_ms = sum(s["duration_ms"] for s in recorder.steps if s["step"] == "backfill")
        correctness = {
            "concerts": scalar(url, "SELECT count(*) FROM concert"),
            "unlinked": scalar(url, "SELECT count(*) FROM concert WHERE artist_id IS NULL"),
            "reference_rows_updated": reference_rows,
            "differs_from_reference": scalar(
                url,
                "SELECT count(*) FROM concert c JOIN concert_ref r USING (id) "
                "WHERE r.artist_id IS DISTINCT FROM c.artist_id",
            ),
            "probe_errors": migration_probe["errors"] + reference_probe["errors"],
        }
        return {
            "workload": {
                "rows": rows,
                "batch_size": batch_size,
                "distinct_spellings": distinct + 3,
                "artists_after": scalar(url, "SELECT count(*) FROM artist"),
                "postgres": scalar(url, "SHOW server_version"),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            "results": {
                "total_s": round(migration_s, 2),
                "rows_per_s": round(rows / migration_s),
                "backfill_s": round(backfill_ms / 1000, 2),
                "batches": len(batches),
                "longest_batch_ms": round(max((b["duration_ms"] for b in batches), default=0), 1),
                "median_batch_ms": round(
                    statistics.median(b["duration_ms"] for b in batches) if batches else 0, 1
                ),
                "reference_single_statement_s": round(reference_s, 2),
                "ratio_total_to_reference": round(migration_s / reference_s, 2),
                "ratio_backfill_to_reference": round(backfill_ms / 1000 / reference_s, 2),
                "probe_during_migration": migration_probe,
                "probe_during_reference": reference_probe,
            },
            "steps": [s for s in recorder.steps if not s["step"].endswith(" batch")],
            "batch_ms": [round(b["duration_ms"], 1) for b in batches],
            "correctness": correctness,
        }
    finally:
        drop_database(url)


def markdown(report: dict[str, Any]) -> str:
    w, r, c = report["workload"], report["results"], report["correctness"]
    lines = [
        "# Revision 0002 on a large legacy concert table",
        "",
        f"Workload: {w['rows']:,} legacy concerts, {w['distinct_spellings']:,} distinct artist "
        f"spellings (case/space variants, empty, NULL) -> {w['artists_after']:,} artists; "
        f"batch size {w['batch_size']:,}; PostgreSQL {w['postgres']}, {w['cpus']} CPUs, "
        f"Python {w['python']}. Generated by `loadtests/bench_migration.py`.",
        "",
        "| rows | total s | rows/s | batches | longest batch ms | median batch ms | backfill s "
        "| reference single-statement s | ratio total/reference | ratio backfill/reference |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {w['rows']:,} | {r['total_s']} | {r['rows_per_s']:,} | {r['batches']} "
        f"| {r['longest_batch_ms']} | {r['median_batch_ms']} | {r['backfill_s']} "
        f"| {r['reference_single_statement_s']} | {r['ratio_total_to_reference']} "
        f"| {r['ratio_backfill_to_reference']} |",
        "",
        "A probe updated one random concert every ~5 ms; how long its writes waited:",
        "",
        "| during | writes | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key in (
        ("batched migration", "probe_during_migration"),
        ("single-statement reference", "probe_during_reference"),
    ):
        p = r[key]
        lines.append(f"| {label} | {p['writes']} | {p['p99_ms']} | {p['max_ms']} | {p['errors']} |")
    lines += ["", "Migration steps:", "", "| step | ms |", "|---|---:|"]
    lines += [f"| {s['step']} | {s['duration_ms']:.0f} |" for s in report["steps"]]
    lines += ["", "Correctness (all must be 0 except the counts):", ""]
    lines += [f"- {key}: {value:,}" for key, value in c.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--spellings", type=int, default=2_000, help="distinct non-empty spellings")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "catalog")
    args = parser.parse_args()
    print(
        f"workload: rows={args.rows:,} batch_size={args.batch_size:,} "
        f"spellings={args.spellings:,} (+ NULL, '', blanks)"
    )

    report = run(args.rows, args.batch_size, args.spellings)

    text = markdown(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "migration.md").write_text(text, encoding="utf-8")
    (args.out / "migration.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    failures = {
        k: v
        for k, v in report["correctness"].items()
        if k in ("unlinked", "differs_from_reference", "probe_errors") and v
    }
    if failures or report["correctness"]["concerts"] != args.rows:
        sys.exit(f"correctness check failed: {report['correctness']}")


if __name__ == "__main__":
    main()
