"""Booking benchmark: every strategy, three scenarios, the real API, references in the same run.

    python -m loadtests.bench_booking --out reports/booking [--quick] [--strategies a,b]
    python -m loadtests.bench_booking --base-url http://127.0.0.1:8000 ...   (an API already up)

Scenarios, each on a fresh concert per strategy (max 20 tickets per fan):

  hot_seat           1,000 fans race for one seat; 50 rounds, one seat per round
  spread             5,000 fans, each books one seat drawn at random from 5,000 (same draws for
                     every strategy)
  general_admission  10,000 fans each buy 1 ticket of a stock of 1,000

Every request is one fan's one booking request (a JWT minted for a fan created in bulk in the
database). The load comes from `loadtests.booking_scenarios`: closed-loop keep-alive HTTP/1.1
connections spread over several driver processes; a round starts all its requests at once and
ends when the last is answered. References measured in the same run: `GET /healthz` with the same
driver and connections (the HTTP ceiling of this API on this machine), `pgbench` updating one
hot row (the database's ceiling for one contended row) and `redis-benchmark` of claim scripts by
EVALSHA (Redis's ceiling for an atomic claim).

After every run the database is checked: oversold, double-booked seats, lost 201s (booking not
in the database) and unanswered requests must all be 0.

By default (no --base-url) the benchmark owns everything it measures: a throwaway database on the
local stack's PostgreSQL (`ticket-rush stack up` writes .run/stack.env), a private Redis key
prefix, the API under uvicorn with 2 workers on a free port (and one booking consumer if the
`redis_claim` strategy is registered); all removed at the end. With --base-url it drives an API
that is already running and reads TR_DATABASE_URL / TR_REDIS_URL / TR_REDIS_PREFIX and the JWT
settings from the environment (the smoke test points it at the test session's live server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import io
import json
import os
import platform
import random
import re
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.core.config import PROJECT_ROOT, Settings
from app.core.security import issue_access_token
from app.devstack.broker import (
    ensure_topics,
    free_port,
    spawn,
    start_broker,
    stop_process,
    wait_broker_ready,
)
from loadtests.bench_catalog import create_database, drop_database, ensure_stack_env, run_cli
from loadtests.booking_scenarios import (
    DB_CAUGHT_SUFFIX,
    LoadDriver,
    RoundResult,
    RoundSpec,
    cpu_count,
    percentile,
)
from loadtests.loadgen import (
    CpuMeter,
    Samples,
    descendants,
    established_connections,
    machine_info,
    process_cpu_s,
    sample_delta,
    scrape,
)

SCENARIOS = ("hot_seat", "spread", "general_admission")
SCENARIO_TITLES = {
    "hot_seat": "hot seat",
    "spread": "spread",
    "general_admission": "general admission",
}
STRATEGY_LETTERS = {
    "inprocess": "A",
    "pessimistic": "B",
    "optimistic": "C",
    "redis_lock": "D",
    "atomic": "E",
    "redis_claim": "F",
}
ASYNC_STRATEGY = "redis_claim"  # answers 202 and persists through Kafka
PERSIST_TIMEOUT_S = 180.0
QUIET_CORES = 0.3  # busier than this before the run: warn that the machine is not quiet
GOAL_HOT_OVER_NOOP = 0.60
GOAL_OVER_PESSIMISTIC = 2.0
MAX_PER_USER = 20
TOKEN_TTL_S = 6 * 3600
API_START_TIMEOUT_S = 60.0
# A run counts only if no API worker holds more than this multiple of its fair share of the
# driver's connections (uvicorn's workers share one listening socket); else reconnect.
MAX_WORKER_SHARE = 1.25
SPLIT_ATTEMPTS = 5
PGBENCH_SCRIPT = Path(__file__).with_name("pgbench_hot_row.sql")
ADMIN_EMAIL = "bench-booking-admin@ticketrush.io"

# redis-benchmark references (used when the strategy's own claim script is not importable).
SEAT_CLAIM_LUA = """-- claim one seat: the first caller wins, everyone else gets 0
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 1 end
return 0
"""
STOCK_CLAIM_LUA = """-- take ARGV[1] tickets if that many are left, else -1
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = tonumber(ARGV[1])
if stock < n then return -1 end
return redis.call('DECRBY', KEYS[1], n)
"""

# Wide enough for the results table when the output is not a terminal (make, CI logs).
console = Console(width=None if sys.stdout.isatty() else 180)


# --- parameters -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Params:
    strategies: tuple[str, ...]
    quick: bool
    hot_clients: int
    hot_seats: int
    spread_clients: int
    spread_seats: int
    ga_buyers: int
    ga_stock: int
    connections: int
    driver_processes: int
    api_workers: int
    request_timeout_s: float
    reference_s: float
    pgbench_s: int
    pgbench_clients: int
    pgbench_threads: int
    redis_requests: int
    redis_clients: int
    seed: int

    @property
    def fans(self) -> int:
        return max(self.hot_clients, self.spread_clients, self.ga_buyers)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def full_params(strategies: tuple[str, ...], **over: Any) -> Params:
    base: dict[str, Any] = {
        "strategies": strategies,
        "quick": False,
        "hot_clients": 1000,
        "hot_seats": 50,
        "spread_clients": 5000,
        "spread_seats": 5000,
        "ga_buyers": 10_000,
        "ga_stock": 1000,
        "connections": 1000,
        "driver_processes": 2,
        "api_workers": 2,
        "request_timeout_s": 60.0,
        "reference_s": 5.0,
        "pgbench_s": 10,
        "pgbench_clients": 20,
        "pgbench_threads": 2,
        "redis_requests": 200_000,
        "redis_clients": 50,
        "seed": 20240601,
    }
    return Params(**(base | over))


def quick_params(strategies: tuple[str, ...], **over: Any) -> Params:
    small: dict[str, Any] = {
        "quick": True,
        "hot_clients": 100,
        "hot_seats": 5,
        "spread_clients": 200,
        "spread_seats": 200,
        "ga_buyers": 500,
        "ga_stock": 50,
        "connections": 100,
        "request_timeout_s": 30.0,
        "reference_s": 2.0,
        "pgbench_s": 2,
        "redis_requests": 20_000,
    }
    return full_params(strategies, **(small | over))


def params_table(p: Params, target: str) -> Table:
    table = Table(title="booking benchmark: workload parameters", show_header=False)
    table.add_column("parameter", style="bold")
    table.add_column("value")
    rows = [
        ("mode", "quick (smoke)" if p.quick else "full"),
        ("target", target),
        ("strategies", ", ".join(f"{STRATEGY_LETTERS.get(s, '?')} {s}" for s in p.strategies)),
        ("hot seat", f"{p.hot_clients:,} fans race for one seat x {p.hot_seats} seats (rounds)"),
        ("spread", f"{p.spread_clients:,} fans over {p.spread_seats:,} seats (random draw)"),
        ("general admission", f"{p.ga_buyers:,} buyers x 1 ticket, stock {p.ga_stock:,}"),
        ("per-fan limit", f"{MAX_PER_USER} tickets per concert; one request per fan per round"),
        (
            "driver",
            f"{p.connections:,} keep-alive connections over {p.driver_processes} processes "
            f"(asyncio + uvloop + httptools), closed loop, timeout {p.request_timeout_s:g} s",
        ),
        ("API", f"uvicorn, {p.api_workers} worker processes"),
        ("no-op reference", f"GET /healthz, same driver and connections, {p.reference_s:g} s"),
        (
            "pgbench reference",
            f"1 hot-row UPDATE, -c {p.pgbench_clients} -j {p.pgbench_threads} -T {p.pgbench_s}",
        ),
        (
            "redis-benchmark reference",
            f"EVALSHA claim scripts, -n {p.redis_requests:,} -c {p.redis_clients}",
        ),
        ("seed", str(p.seed)),
        ("machine", f"{cpu_count()} cores shared by the API, PostgreSQL, Redis and the driver"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


# --- target: the API and its resources --------------------------------------------------------


@dataclass
class Target:
    base_url: str = ""
    db_url: str = ""
    redis_url: str = ""
    redis_prefix: str = ""
    settings: Settings | None = None
    env: dict[str, str] = field(default_factory=dict)
    managed: bool = False  # created (and removed) by this run
    api_pid: int | None = None
    consumer_pid: int | None = None
    broker_pid: int | None = None
    metrics_dir: Path | None = None
    created_dbs: list[str] = field(default_factory=list)
    logs: Path = PROJECT_ROOT / ".run" / "logs"

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.base_url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def api_workers(self) -> list[int]:
        """uvicorn worker pids (the supervisor's children, not multiprocessing's tracker)."""
        if self.api_pid is None:
            return []
        workers = []
        for pid in descendants(self.api_pid)[1:]:
            with contextlib.suppress(OSError):
                if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    workers.append(pid)
        return workers or [self.api_pid]


def settings_from(env: dict[str, str]) -> Settings:
    """The API's settings as the API process will read them from `env`."""
    values = {k[3:].lower(): v for k, v in env.items() if k.startswith("TR_")}
    return Settings.model_validate(values)


async def start_managed(target: Target, params: Params, with_consumer: bool) -> None:
    stack_env = ensure_stack_env()
    tag = secrets.token_hex(4)
    target.managed = True
    target.logs.mkdir(parents=True, exist_ok=True)
    target.db_url = await create_database(stack_env["TR_DATABASE_URL"], f"tr_bench_booking_{tag}")
    target.created_dbs.append(target.db_url)
    target.redis_url = stack_env.get("TR_REDIS_URL", "redis://127.0.0.1:6379/0")
    target.redis_prefix = f"trbench-{tag}"
    target.metrics_dir = Path(tempfile.mkdtemp(prefix="tr-bench-booking-metrics-"))
    # A private broker: the stack's one may hold other runs' booking requests (a new consumer
    # group reads from the earliest offset and would apply them to this database), and this
    # run's requests must not reach anybody else's consumer either.
    broker_port = free_port()
    broker = start_broker(broker_port, target.logs / "bench-booking-tansu.log")
    target.broker_pid = broker.pid
    bootstrap = f"127.0.0.1:{broker_port}"
    await wait_broker_ready(bootstrap)
    await ensure_topics(bootstrap, Settings().kafka_topics)
    port = free_port()
    target.env = {
        **os.environ,
        **stack_env,
        "TR_DATABASE_URL": target.db_url,
        "TR_REDIS_URL": target.redis_url,
        "TR_REDIS_PREFIX": target.redis_prefix,
        "TR_KAFKA_BOOTSTRAP": bootstrap,
        "TR_API_HOST": "127.0.0.1",
        "TR_API_PORT": str(port),
        "TR_API_WORKERS": str(params.api_workers),
        "TR_LOG_LEVEL": "WARNING",
        # No hold of this run expires while the run lasts: the sweeper stays idle.
        "TR_HOLD_TTL_S": "7200",
        # Each hot-seat fan tries once per round; the per-fan hold limit is not under test.
        "TR_BOOKING_LIMIT_PER_ACCOUNT": "1000000",
        "PROMETHEUS_MULTIPROC_DIR": str(target.metrics_dir),
        # No metrics port: another consumer on this machine may hold the default one.
        "TR_BOOKING_CONSUMER_METRICS_PORT": "0",
    }
    target.settings = settings_from(target.env)
    setup_log = target.logs / "bench-booking-setup.log"
    console.print(f"setup: database {make_url(target.db_url).database}, migrations")
    await asyncio.to_thread(run_cli, ["migrate"], target.env, setup_log)
    console.print(f"setup: API with {params.api_workers} workers on port {port}")
    api = spawn(
        [sys.executable, "-m", "app.api"],
        target.logs / "bench-booking-api.log",
        env=target.env,
        cwd=PROJECT_ROOT,
    )
    target.api_pid = api.pid
    target.base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + API_START_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if api.poll() is not None:
                raise RuntimeError(f"the API exited ({api.returncode}); see {target.logs}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{target.base_url}/healthz")).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not become healthy")
            await asyncio.sleep(0.2)
    while len(target.api_workers()) < params.api_workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {params.api_workers} API workers")
        await asyncio.sleep(0.2)
    if with_consumer:
        console.print("setup: one booking consumer (python -m app.booking_consumer)")
        consumer = spawn(
            [sys.executable, "-m", "app.booking_consumer"],
            target.logs / "bench-booking-consumer.log",
            env=target.env,
            cwd=PROJECT_ROOT,
        )
        target.consumer_pid = consumer.pid


def use_running(target: Target, base_url: str) -> None:
    env = dict(os.environ)
    target.base_url = base_url.rstrip("/")
    target.env = env
    target.settings = settings_from(env)
    target.db_url = target.settings.database_url
    target.redis_url = target.settings.redis_url
    target.redis_prefix = target.settings.redis_prefix


async def cleanup(target: Target) -> None:
    for pid in (target.consumer_pid, target.api_pid, target.broker_pid):
        if pid is not None:
            await asyncio.to_thread(stop_process, pid, 15)
    target.consumer_pid = target.api_pid = target.broker_pid = None
    if target.managed and target.redis_url:
        redis = Redis.from_url(target.redis_url)
        try:
            keys = [k async for k in redis.scan_iter(f"{target.redis_prefix}:*", count=1000)]
            for start in range(0, len(keys), 1000):
                await redis.unlink(*keys[start : start + 1000])
        finally:
            await redis.aclose()
    for url in target.created_dbs:
        with contextlib.suppress(Exception):
            await drop_database(url)
    target.created_dbs = []
    if target.metrics_dir is not None:
        shutil.rmtree(target.metrics_dir, ignore_errors=True)
        target.metrics_dir = None


# --- fans, concerts ---------------------------------------------------------------------------


@dataclass
class Sale:
    strategy: str
    scenario: str
    concert_id: int
    seat_ids: list[int]
    stock: int
    requested: set[int] = field(default_factory=set)  # seats some fan asked for


async def create_people(engine: AsyncEngine, target: Target, fans: int) -> tuple[str, list[str]]:
    """An admin and `fans` fans inserted in bulk, with access tokens minted for them."""
    assert target.settings is not None
    settings = target.settings.model_copy(update={"access_token_ttl_s": TOKEN_TTL_S})
    tag = secrets.token_hex(4)
    async with engine.begin() as conn:
        admin_id = (
            await conn.execute(
                text(
                    "INSERT INTO app_user (email, password_hash, display_name, role)"
                    " VALUES (:e, '!', 'Bench admin', 'admin') RETURNING id"
                ),
                {"e": f"{tag}-{ADMIN_EMAIL}"},
            )
        ).scalar_one()
        # Fans never log in: no password hash, only tokens (as tests/booking/conftest.py does).
        fan_ids = (
            (
                await conn.execute(
                    text(
                        "INSERT INTO app_user (email, password_hash, display_name)"
                        " SELECT 'bench-' || :tag || '-' || g || '@example.com', '!', 'Fan ' || g"
                        " FROM generate_series(1, :n) g ORDER BY g RETURNING id"
                    ),
                    {"tag": tag, "n": fans},
                )
            )
            .scalars()
            .all()
        )
    admin = issue_access_token(settings, user_id=int(admin_id), role="admin")[0]
    tokens = [issue_access_token(settings, user_id=int(i), role="fan")[0] for i in fan_ids]
    return admin, tokens


class Catalog:
    """Concerts for the benchmark, created through the API as the admin."""

    def __init__(self, client: httpx.AsyncClient, engine: AsyncEngine) -> None:
        self.client, self.engine = client, engine
        self.artist = self.venue = 0
        self.count = 0

    async def post(self, path: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        response = await self.client.post(path, json=body)
        if response.status_code != expect:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
        doc: dict[str, Any] = response.json()
        return doc

    async def prepare(self) -> None:
        agency = await self.post("/agencies", {"name": "Bench Booking Agency", "country": "KR"})
        artist = await self.post("/artists", {"agency_id": agency["id"], "name": "Bench Band"})
        venue = await self.post(
            "/venues", {"name": "Bench Arena", "city": "Seoul", "country": "KR"}
        )
        self.artist, self.venue = artist["id"], venue["id"]

    async def sale(
        self, strategy: str, scenario: str, *, rows: int, per_row: int, stock: int
    ) -> Sale:
        self.count += 1
        starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30, hours=self.count)
        concert = await self.post(
            "/concerts",
            {
                "title": f"Bench {scenario} {strategy} {self.count}",
                "artist_id": self.artist,
                "venue_id": self.venue,
                "starts_at": starts.isoformat(),
                "max_tickets_per_user": MAX_PER_USER,
            },
        )
        cid = int(concert["id"])
        if rows:
            await self.post(
                f"/concerts/{cid}/seats:generate",
                {
                    "sections": [
                        {"name": "Floor", "rows": rows, "seats_per_row": per_row, "price": 150_000}
                    ]
                },
            )
        if stock:
            response = await self.client.put(
                f"/concerts/{cid}/general-admission", json={"quantity": stock, "price": 99_000}
            )
            if response.status_code != 200:
                raise RuntimeError(f"PUT general-admission: {response.status_code}")
        response = await self.client.patch(f"/concerts/{cid}", json={"status": "on_sale"})
        if response.status_code != 200:
            raise RuntimeError(f"PATCH concert: {response.status_code} {response.text[:300]}")
        async with self.engine.connect() as conn:
            seat_ids = list(
                (
                    await conn.execute(
                        text("SELECT id FROM seat WHERE concert_id = :c ORDER BY id"), {"c": cid}
                    )
                )
                .scalars()
                .all()
            )
        return Sale(strategy, scenario, cid, [int(s) for s in seat_ids], stock)


def seat_layout(seats: int) -> tuple[int, int]:
    """(rows, seats per row) for exactly `seats` seats."""
    per_row = 100 if seats % 100 == 0 else seats if seats <= 1000 else 1
    return seats // per_row, per_row


async def create_sale(catalog: Catalog, params: Params, strategy: str, scenario: str) -> Sale:
    if scenario == "hot_seat":
        rows, per_row = seat_layout(params.hot_seats)
        return await catalog.sale(strategy, scenario, rows=rows, per_row=per_row, stock=0)
    if scenario == "spread":
        rows, per_row = seat_layout(params.spread_seats)
        return await catalog.sale(strategy, scenario, rows=rows, per_row=per_row, stock=0)
    return await catalog.sale(strategy, scenario, rows=0, per_row=0, stock=params.ga_stock)


def booking_body(strategy: str, *, seat: int | None = None, quantity: int = 1) -> bytes:
    doc: dict[str, Any] = {"seat_ids": [seat]} if seat is not None else {"quantity": quantity}
    doc["strategy"] = strategy
    return json.dumps(doc, separators=(",", ":")).encode()


def build_rounds(params: Params, sale: Sale) -> list[RoundSpec]:
    """The same draws for every strategy: the random streams depend only on the seed."""
    path = f"/concerts/{sale.concert_id}/bookings"
    rng = random.Random(f"{params.seed}:{sale.scenario}")
    if sale.scenario == "hot_seat":
        rounds = []
        for seat in sale.seat_ids[: params.hot_seats]:
            sale.requested.add(seat)
            body = booking_body(sale.strategy, seat=seat)
            fans = rng.sample(range(params.hot_clients), params.hot_clients)
            rounds.append(RoundSpec("POST", path, [(fan, body) for fan in fans]))
        return rounds
    if sale.scenario == "spread":
        draws = [rng.randrange(params.spread_seats) for _ in range(params.spread_clients)]
        bodies = {i: booking_body(sale.strategy, seat=sale.seat_ids[i]) for i in set(draws)}
        sale.requested.update(sale.seat_ids[i] for i in bodies)
        return [RoundSpec("POST", path, [(fan, bodies[i]) for fan, i in enumerate(draws)])]
    fans = rng.sample(range(params.ga_buyers), params.ga_buyers)
    body = booking_body(sale.strategy, quantity=1)
    return [RoundSpec("POST", path, [(fan, body) for fan in fans])]


# --- measurement ------------------------------------------------------------------------------


@dataclass
class Run:
    """One strategy x scenario (or the no-op reference) as the driver and the database saw it."""

    strategy: str
    scenario: str
    concert_id: int | None
    rounds: list[RoundResult]
    wall_s: float
    retries: float = 0.0
    outcomes: dict[str, float] = field(default_factory=dict)
    db: dict[str, int] = field(default_factory=dict)
    cpu_cores: dict[str, float] = field(default_factory=dict)
    pg_sessions_opened: int | None = None
    connections_per_worker: list[int] = field(default_factory=list)
    persist_s: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def unanswered(self) -> int:
        return sum(1 for r in self.rounds for status in r.statuses if status == 0)

    def summarize(self) -> dict[str, Any]:
        statuses: Counter[int] = Counter()
        latencies: list[float] = []
        conflicts: Counter[str] = Counter()
        samples: list[str] = []
        duration = driver_cpu = 0.0
        db_caught = reconnects = 0
        for r in self.rounds:
            statuses.update(r.statuses)
            latencies += r.latencies
            conflicts.update(r.conflicts)
            samples += r.samples
            duration += r.duration_s
            driver_cpu += r.cpu_s
            db_caught += r.db_caught
            reconnects += r.reconnects
        latencies.sort()
        requests = sum(statuses.values())
        ok = statuses[201] + statuses[202] + (statuses[200] if self.strategy == "noop" else 0)
        unanswered = statuses[0]
        errors = requests - ok - statuses[409] - unanswered
        self.summary = {
            "strategy": self.strategy,
            "scenario": self.scenario,
            "concert_id": self.concert_id,
            "rounds": len(self.rounds),
            "requests": requests,
            "duration_s": round(duration, 3),
            "wall_s": round(self.wall_s, 3),
            "rps": requests / duration if duration else 0.0,
            "latency_ms": {
                "p50": percentile(latencies, 50) * 1000,
                "p95": percentile(latencies, 95) * 1000,
                "p99": percentile(latencies, 99) * 1000,
                "max": (latencies[-1] if latencies else 0.0) * 1000,
                "mean": (sum(latencies) / len(latencies) * 1000) if latencies else 0.0,
            },
            "status": {str(k): v for k, v in sorted(statuses.items())},
            "successes": ok,
            "accepted_202": statuses[202],
            "conflicts": statuses[409],
            "conflict_types": dict(conflicts.most_common()),
            "db_caught_conflicts": db_caught,
            "errors": errors,
            "unanswered": unanswered,
            "retries": self.retries,
            "server_outcomes": self.outcomes,
            "db": self.db,
            "persist_s": self.persist_s,
            "driver_cpu_s": round(driver_cpu, 3),
            "driver_us_per_request": driver_cpu / requests * 1e6 if requests else 0.0,
            "cpu_cores": self.cpu_cores,
            "pg_sessions_opened": self.pg_sessions_opened,
            "connections_per_worker": self.connections_per_worker,
            "reconnects": reconnects,
            "samples": samples[:5],
        }
        return self.summary


VIOLATIONS = ("oversold", "double_booked", "lost", "unanswered", "phantom", "inconsistent")


def violations(s: dict[str, Any]) -> dict[str, int]:
    """The correctness counters of one run (all must be 0)."""
    db = s.get("db", {})
    return {
        "oversold": int(db.get("oversold", 0)),
        "double_booked": int(db.get("double_booked", 0)),
        "lost": int(db.get("lost", 0)),
        "unanswered": int(s.get("unanswered", 0)),
        # Booked in the database although the request was answered with an error.
        "phantom": int(db.get("phantom", 0)),
        "inconsistent": int(db.get("inconsistent", 0)),
    }


async def pg_sessions(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        value = await conn.scalar(
            text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        )
    return int(value or 0)


async def postmaster_pid(engine: AsyncEngine) -> int | None:
    """PostgreSQL's postmaster (our backend's parent), None if it is not on this machine."""
    async with engine.connect() as conn:
        backend = int(await conn.scalar(text("SELECT pg_backend_pid()")) or 0)
        return parent_pid(backend)


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def tree_cpu(root: int | None) -> dict[int, float]:
    """CPU seconds of every live process under `root` (PostgreSQL: postmaster and backends)."""
    if root is None:
        return {}
    return {pid: cpu for pid in descendants(root) if (cpu := process_cpu_s(pid)) is not None}


async def redis_server_pids(redis: Redis) -> list[int]:
    pid = int((await redis.info("server")).get("process_id", 0))
    return [pid] if pid and process_cpu_s(pid) is not None else []


@dataclass
class Bench:
    params: Params
    target: Target
    engine: AsyncEngine
    redis: Redis
    driver: LoadDriver
    http: httpx.AsyncClient
    redis_pids: list[int] = field(default_factory=list)
    postmaster: int | None = None

    async def connect(self) -> list[int]:
        """Fresh driver connections, split about evenly over the API workers when we know them."""
        workers = self.target.api_workers() if self.target.managed else []
        split: dict[int, int] = {}
        for _ in range(SPLIT_ATTEMPTS):
            await self.driver.connect()
            if not workers:
                return []
            await asyncio.sleep(0.05)
            split = established_connections(workers, self.target.host_port[1])
            held = sum(split.values())
            if held and max(split.values()) <= held * MAX_WORKER_SHARE / len(workers):
                break
            console.print(f"  connections per API worker {sorted(split.values())}: reconnecting")
        return sorted(split.values(), reverse=True)

    def meter(self) -> CpuMeter:
        groups = {"redis": self.redis_pids}
        if self.target.api_pid is not None:
            groups["api"] = descendants(self.target.api_pid)
        if self.target.consumer_pid is not None:
            groups["consumer"] = descendants(self.target.consumer_pid)
        return CpuMeter(groups)

    async def metrics(self) -> Samples:
        return await scrape(self.http, f"{self.target.base_url}/metrics")

    async def measure(
        self,
        strategy: str,
        scenario: str,
        rounds: list[RoundSpec],
        *,
        concert_id: int | None,
        repeat_for_s: float | None = None,
    ) -> Run:
        """Run the rounds in order (or round 0 again and again for `repeat_for_s` seconds)."""
        await self.driver.load(rounds)
        split = await self.connect()
        before = await self.metrics()
        sessions_before = await pg_sessions(self.engine)
        meter = self.meter()
        pg_before = tree_cpu(self.postmaster)
        meter.start()
        started = time.monotonic()
        results: list[RoundResult] = []
        if repeat_for_s is None:
            for index in range(len(rounds)):
                results.append(await self.driver.run(index))
        else:
            while time.monotonic() - started < repeat_for_s:
                results.append(await self.driver.run(0))
        wall = time.monotonic() - started
        cpu = meter.stop()
        # Backends opened and closed within the run are missed (see pg_sessions_opened).
        pg_after = tree_cpu(self.postmaster)
        cpu["postgres"] = sum(v - pg_before.get(pid, 0.0) for pid, v in pg_after.items())
        after = await self.metrics()
        run = Run(strategy, scenario, concert_id, results, wall)
        run.pg_sessions_opened = max(await pg_sessions(self.engine) - sessions_before - 1, 0)
        run.connections_per_worker = split
        run.retries = sum(
            sample_delta(before, after, "tr_booking_retries_total", strategy=strategy).values()
        )
        outcomes: Counter[str] = Counter()
        for labels, value in sample_delta(
            before, after, "tr_booking_outcomes_total", strategy=strategy
        ).items():
            if value:
                outcomes[dict(labels)["outcome"]] += int(value)
        run.outcomes = dict(outcomes)
        driver_cpu = sum(r.cpu_s for r in results)
        capacity = cpu.get("machine_capacity", 0.0) / cpu_count() if cpu_count() else 0.0
        seconds = capacity or wall
        run.cpu_cores = {
            name: round(value / seconds, 3)
            for name, value in cpu.items()
            if name not in ("machine_capacity", "bench_process")
        } | {"driver": round(driver_cpu / seconds, 3)}
        return run


# --- correctness ------------------------------------------------------------------------------

ACTIVE = "('held', 'paid', 'confirmed')"


async def check_database(
    engine: AsyncEngine, sale: Sale, run: Run, acknowledged: set[int] | None = None
) -> dict[str, int]:
    """Correctness counters of one run, computed from the database.

    `acknowledged`: the booking ids the fans were promised (default: those of the 201s)."""
    if acknowledged is None:
        acknowledged = {i for r in run.rounds for i in r.booking_ids}
    async with engine.connect() as conn:
        active = set(
            (
                await conn.execute(
                    text(f"SELECT id FROM booking WHERE concert_id = :c AND status IN {ACTIVE}"),
                    {"c": sale.concert_id},
                )
            )
            .scalars()
            .all()
        )
        unacknowledged = len(active - acknowledged)
        out = {
            "active_bookings": len(active),
            # A 201 whose booking is not (or no longer) in the database.
            "lost": len(acknowledged - active),
            # Bookings nobody was told about: possible for a request that got no answer; beyond
            # that, a booking whose request was answered with an error ("phantom").
            "unacknowledged": unacknowledged,
            "phantom": max(unacknowledged - run.unanswered(), 0),
        }
        if sale.scenario == "general_admission":
            total, stock = (
                await conn.execute(
                    text("SELECT total, stock FROM ga_inventory WHERE concert_id = :c"),
                    {"c": sale.concert_id},
                )
            ).one()
            sold = int(
                await conn.scalar(
                    text(
                        "SELECT coalesce(sum(quantity), 0) FROM booking WHERE concert_id = :c"
                        f" AND general_admission AND status IN {ACTIVE}"
                    ),
                    {"c": sale.concert_id},
                )
                or 0
            )
            out |= {
                "available": int(total),
                "sold": sold,
                "stock_left": int(stock),
                "oversold": max(sold - int(total), 0),
                "unsold": max(int(total) - sold, 0),
                "double_booked": 0,
                # Stock, sales and the total must add up.
                "inconsistent": abs(int(total) - int(stock) - sold),
            }
            return out
        per_seat = (
            await conn.execute(
                text(
                    "SELECT bs.seat_id, count(*) FROM booking_seat bs"
                    " JOIN booking b ON b.id = bs.booking_id"
                    f" WHERE b.concert_id = :c AND bs.active AND b.status IN {ACTIVE}"
                    " GROUP BY bs.seat_id"
                ),
                {"c": sale.concert_id},
            )
        ).all()
        drift = int(
            await conn.scalar(
                text(
                    "SELECT count(*) FROM seat s WHERE s.concert_id = :c AND"
                    " (s.status <> 'available') <> EXISTS (SELECT 1 FROM booking_seat bs"
                    " WHERE bs.seat_id = s.id AND bs.active)"
                ),
                {"c": sale.concert_id},
            )
            or 0
        )
    held = sum(int(n) for _, n in per_seat)
    out |= {
        "available": len(sale.seat_ids),
        "sold": held,
        "oversold": max(held - len(sale.seat_ids), 0),
        "unsold": len(sale.requested - {int(seat) for seat, _ in per_seat}),
        "double_booked": sum(1 for _, n in per_seat if n > 1),
        # Seat status that disagrees with its active booking rows.
        "inconsistent": drift,
    }
    return out


async def wait_persisted(
    engine: AsyncEngine, request_ids: list[str], timeout_s: float
) -> dict[str, Any]:
    """redis_claim: wait until the consumer has recorded an outcome for every accepted request.

    Returns the seconds that took (None at the timeout), what is still missing, how many the
    database refused after the 202 (Redis and PostgreSQL disagreed) and the booking ids held."""
    ids = [uuid.UUID(r) for r in request_ids]
    started = time.monotonic()
    done = 0
    while True:
        async with engine.connect() as conn:
            done = int(
                await conn.scalar(
                    text(
                        "SELECT count(*) FROM booking_inbox WHERE request_id = ANY(:ids)"
                        " AND outcome IN ('held', 'rejected')"
                    ),
                    {"ids": ids},
                )
                or 0
            )
        elapsed = time.monotonic() - started
        if done >= len(ids) or elapsed > timeout_s:
            break
        await asyncio.sleep(0.1)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT outcome, booking_id FROM booking_inbox WHERE request_id = ANY(:ids)"
                    " AND outcome IN ('held', 'rejected')"
                ),
                {"ids": ids},
            )
        ).all()
    return {
        "persist_s": elapsed if done >= len(ids) else None,
        "not_persisted": len(ids) - done,
        "rejected_after_202": sum(1 for outcome, _ in rows if outcome == "rejected"),
        "booking_ids": {int(b) for outcome, b in rows if outcome == "held" and b is not None},
    }


# --- references -------------------------------------------------------------------------------


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / name).exists():
            return str(directory / name)
    return None


def pgbench_latencies_ms(work: Path) -> list[float]:
    """Sorted per-transaction latencies from pgbench's -l logs (third field, µs)."""
    latencies: list[float] = []
    for log in work.glob("pgbench.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                latencies.append(int(fields[2]) / 1000)
    return sorted(latencies)


async def tool_version(exe: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        exe, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    return (await proc.communicate())[0].decode().strip()


async def run_pgbench(target: Target, params: Params, work: Path) -> dict[str, Any]:
    """pgbench updating one hot row from `pgbench_clients` clients, in a throwaway database."""
    exe = pg_bin("pgbench")
    if exe is None:
        return {"available": False, "reason": "pgbench not found"}
    name = f"tr_bench_pgbench_{secrets.token_hex(4)}"
    url = await create_database(target.db_url, name)
    target.created_dbs.append(url)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("CREATE TABLE bench_hot_row (id int PRIMARY KEY, n bigint NOT NULL)")
            )
            await conn.execute(text("INSERT INTO bench_hot_row VALUES (1, 0)"))
    finally:
        await engine.dispose()
    u = make_url(url)
    seconds = params.pgbench_s
    argv = [
        exe,
        "-n",
        "-M",
        "prepared",
        "-c",
        str(params.pgbench_clients),
        "-j",
        str(params.pgbench_threads),
        "-T",
        str(seconds),
        "-f",
        str(PGBENCH_SCRIPT),
        "-l",
        f"--log-prefix={work / 'pgbench'}",
        "-h",
        u.host or "127.0.0.1",
        "-p",
        str(u.port or 5432),
        "-U",
        u.username or "postgres",
        u.database or name,
    ]
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = u.password
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out = (await proc.communicate())[0].decode()
    if proc.returncode != 0:
        return {"available": False, "reason": f"pgbench failed: {out[-500:]}"}
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    latencies = await asyncio.to_thread(pgbench_latencies_ms, work)
    return {
        "available": True,
        "tool": await tool_version(exe),
        "script": PGBENCH_SCRIPT.read_text().strip().splitlines()[-1],
        "clients": params.pgbench_clients,
        "threads": params.pgbench_threads,
        "duration_s": seconds,
        "tps": float(tps.group(1)) if tps else 0.0,
        "transactions": len(latencies),
        "failed": int(failed.group(1)) if failed else 0,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
        },
    }


@dataclass(frozen=True, slots=True)
class ClaimBench:
    """One redis-benchmark run: a Lua claim script, its keys and arguments, and key setup."""

    name: str
    origin: str
    source: str
    keys: list[str]
    args: list[str]  # `__rand_int__` becomes a random 12-digit number per call (-r)
    setup: dict[str, Any]  # key -> str (SET) or dict (HSET)


def claim_benches(prefix: str) -> list[ClaimBench]:
    """The redis_claim strategy's own claim script when it is importable (against an inventory
    laid out as a loaded one: hot seat = one seat already taken, general admission = a stock
    that never runs out), else equivalent scripts."""
    tag = f"{prefix}:bench:{{concert:0}}"
    meta, seats, ga, claims = (f"{tag}:inv:{k}" for k in ("meta", "seats", "ga", "claims"))
    try:
        from app.booking.inventory import CLAIM

        source: str | None = CLAIM.source
    except ImportError:
        source = None
    if source is not None:
        meta_fields = {"loaded": "1", "version": "1", "epoch": "0", "seats": "1", "ga": "1"}
        origin = "`app.booking.inventory` claim script (strategy F)"
        keys = [meta, seats, ga, claims]
        return [
            ClaimBench(
                "seat claim, hot seat (taken)",
                origin,
                source,
                keys,
                ["__rand_int__", "1700000000", "1", "42"],
                {meta: meta_fields, seats: {"42": "0"}, ga: str(10**12)},
            ),
            ClaimBench(
                "stock claim, general admission (succeeds)",
                origin,
                source,
                keys,
                ["__rand_int__", "1700000000", "1"],
                {meta: meta_fields, seats: {"42": "0"}, ga: str(10**12)},
            ),
        ]
    origin = "equivalent Lua (F's claim script not importable)"
    return [
        ClaimBench("seat claim, hot seat (taken)", origin, SEAT_CLAIM_LUA, [seats], ["fan"], {}),
        ClaimBench(
            "stock claim, general admission (succeeds)",
            origin,
            STOCK_CLAIM_LUA,
            [ga],
            ["1"],
            {ga: str(10**12)},
        ),
    ]


async def run_redis_benchmark(target: Target, params: Params, redis: Redis) -> dict[str, Any]:
    """redis-benchmark of the claim scripts by EVALSHA, -c clients, -n calls each."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return {"available": False, "reason": "redis-benchmark not found"}
    parts = urlsplit(target.redis_url)
    base = [exe, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
    if parts.password:
        base += ["-a", parts.password]
    db = (parts.path or "/0").lstrip("/") or "0"
    base += ["--dbnum", db, "-n", str(params.redis_requests), "-c", str(params.redis_clients)]
    base += ["-r", "1000000000", "--csv"]
    results: dict[str, Any] = {"available": True, "runs": {}, "tool": await tool_version(exe)}
    for bench in claim_benches(target.redis_prefix):
        await redis.delete(*bench.keys)
        for key, value in bench.setup.items():
            if isinstance(value, dict):
                await redis.hset(key, mapping=value)
            else:
                await redis.set(key, value)
        sha = str(await redis.script_load(bench.source))
        argv = [*base, "EVALSHA", sha, str(len(bench.keys)), *bench.keys, *bench.args]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out = (await proc.communicate())[0].decode()
        await redis.delete(*bench.keys)
        rows = [r for r in csv.reader(io.StringIO(out)) if len(r) >= 7 and r[0] != "test"]
        if proc.returncode != 0 or not rows:
            results["runs"][bench.name] = {"available": False, "reason": out[-300:]}
            continue
        row = rows[-1]
        results["runs"][bench.name] = {
            "script_from": bench.origin,
            "rps": float(row[1]),
            "latency_ms": {
                "avg": float(row[2]),
                "p50": float(row[4]),
                "p95": float(row[5]),
                "p99": float(row[6]),
            },
        }
    return results


# --- orchestration ----------------------------------------------------------------------------


def strategies_available() -> list[str]:
    from app.booking.strategies import build_registry

    return list(build_registry())


@contextlib.asynccontextmanager
async def bench_resources(target: Target, params: Params) -> AsyncIterator[Bench]:
    engine = create_async_engine(target.db_url, poolclass=NullPool)
    redis = Redis.from_url(target.redis_url)
    host, port = target.host_port
    driver = LoadDriver(
        host=host,
        port=port,
        processes=params.driver_processes,
        connections=params.connections,
        timeout_s=params.request_timeout_s,
    )
    driver.start()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            bench = Bench(params, target, engine, redis, driver, http)
            bench.redis_pids = await redis_server_pids(redis)
            bench.postmaster = await postmaster_pid(engine)
            yield bench
    finally:
        await driver.stop()
        await redis.aclose()
        await engine.dispose()


def api_settings(target: Target) -> dict[str, Any]:
    """The API settings that shape these figures (as this run configured or found them)."""
    st = target.settings
    if st is None:
        return {}
    return {
        "db_pool_size": st.db_pool_size,
        "db_max_overflow": st.db_max_overflow,
        "db_pool_timeout_s": st.db_pool_timeout,
        "lock_timeout_ms": st.lock_timeout_ms,
        "optimistic_max_retries": st.optimistic_max_retries,
        "redis_lock_ttl_ms": st.redis_lock_ttl_ms,
        "redis_lock_wait_ms": st.redis_lock_wait_ms,
        "hold_ttl_s": st.hold_ttl_s,
    }


def busy_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores; /proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


async def background_cores() -> float:
    before = busy_seconds()
    await asyncio.sleep(1.0)
    return busy_seconds() - before


async def software_versions(bench: Bench) -> dict[str, str]:
    async with bench.engine.connect() as conn:
        pg = str(await conn.scalar(text("SHOW server_version")))
    info = await bench.redis.info("server")
    return {
        "postgres": pg,
        "redis": str(info.get("redis_version", "?")),
        "uvicorn_workers": str(bench.params.api_workers),
    }


def log_run(s: dict[str, Any]) -> None:
    lat = s["latency_ms"]
    v = violations(s)
    bad = {k: n for k, n in v.items() if n}
    mark = "[green]ok[/green]" if not bad else f"[bold red]VIOLATIONS {bad}[/bold red]"
    extra = f", persisted in {s['persist_s']:.1f} s" if s.get("persist_s") is not None else ""
    console.print(
        f"  {s['strategy']:>11} {s['scenario']:<17} {s['requests']:>6} req "
        f"{s['rps']:>7,.0f} req/s p50 {lat['p50']:.0f} p99 {lat['p99']:.0f} ms "
        f"ok {s['successes']} 409 {s['conflicts']} err {s['errors']} "
        f"retries {s['retries']:g} db-caught {s['db_caught_conflicts']}{extra} {mark}"
    )


async def run(params: Params, out_dir: Path, base_url: str | None) -> int:
    registered = strategies_available()
    unknown = [s for s in params.strategies if s not in registered]
    if unknown:
        console.print(f"[red]unknown strategies {unknown}; registered: {registered}[/red]")
        return 2
    target = Target()
    target_label = base_url or "own API (2 uvicorn workers) on the local stack"
    console.print(params_table(params, target_label))
    started = time.monotonic()
    report: dict[str, Any] = {}
    try:
        if base_url:
            use_running(target, base_url)
        else:
            await start_managed(target, params, ASYNC_STRATEGY in params.strategies)
        async with bench_resources(target, params) as bench:
            report = await execute(bench, params, target_label)
    finally:
        console.print("cleanup: stopping what this run started, dropping its databases and keys")
        await cleanup(target)
    report["total_wall_s"] = round(time.monotonic() - started, 1)
    write_reports(out_dir, report)
    console.print(results_table(report))
    return print_verdict(report, out_dir)


async def execute(bench: Bench, params: Params, target_label: str) -> dict[str, Any]:
    setup_started = time.monotonic()
    admin, tokens = await create_people(bench.engine, bench.target, params.fans)
    await bench.driver.set_tokens(tokens)
    async with httpx.AsyncClient(
        base_url=bench.target.base_url,
        headers={"Authorization": f"Bearer {admin}"},
        timeout=60,
    ) as client:
        catalog = Catalog(client, bench.engine)
        await catalog.prepare()
        warmup = await catalog.sale("atomic", "warmup", rows=1, per_row=10, stock=1_000_000)
        sales = {
            (s, sc): await create_sale(catalog, params, s, sc)
            for s in params.strategies
            for sc in SCENARIOS
        }
    console.print(
        f"setup: {params.fans:,} fans with tokens, {len(sales) + 1} concerts "
        f"in {time.monotonic() - setup_started:.1f} s"
    )
    versions = await software_versions(bench)
    background = await background_cores()
    if background > QUIET_CORES:
        console.print(
            f"[yellow]WARNING: the machine is busy before the run ({background:.2f} cores): "
            "the figures will be lower than on a quiet machine[/yellow]"
        )

    # Warm-up: HTTP connections, both workers' DB pools and statement caches.
    noop_round = RoundSpec("GET", "/healthz", [(-1, b"")] * params.connections)
    await bench.measure("noop", "warmup", [noop_round], concert_id=None, repeat_for_s=1.0)
    body = booking_body("atomic", quantity=1)
    ga_warm = RoundSpec(
        "POST",
        f"/concerts/{warmup.concert_id}/bookings",
        [(i, body) for i in range(min(params.connections, params.fans))],
    )
    await bench.measure("atomic", "warmup", [ga_warm], concert_id=None)

    console.print(f"reference: no-op GET /healthz for {params.reference_s:g} s")
    noop = await bench.measure(
        "noop", "noop", [noop_round], concert_id=None, repeat_for_s=params.reference_s
    )
    noop_summary = noop.summarize()
    console.print(
        f"  no-op {noop_summary['rps']:,.0f} req/s, p99 {noop_summary['latency_ms']['p99']:.1f} ms"
    )
    with tempfile.TemporaryDirectory(prefix="tr-bench-pgbench-") as work:
        console.print("reference: pgbench, one hot row")
        pgbench = await run_pgbench(bench.target, params, Path(work))
    console.print(f"  pgbench {pgbench.get('tps', 0):,.0f} tps")
    console.print("reference: redis-benchmark, EVALSHA claim scripts")
    redis_ref = await run_redis_benchmark(bench.target, params, bench.redis)
    for name, r in redis_ref.get("runs", {}).items():
        console.print(f"  redis {name}: {r.get('rps', 0):,.0f} req/s")

    results: list[dict[str, Any]] = []
    for strategy in params.strategies:
        for scenario in SCENARIOS:
            sale = sales[(strategy, scenario)]
            run_ = await bench.measure(
                strategy, scenario, build_rounds(params, sale), concert_id=sale.concert_id
            )
            if strategy == ASYNC_STRATEGY:
                accepted = [i for r in run_.rounds for i in r.request_ids]
                settled = await wait_persisted(
                    bench.engine, accepted, 30 if params.quick else PERSIST_TIMEOUT_S
                )
                run_.persist_s = settled["persist_s"]
                run_.db |= await check_database(bench.engine, sale, run_, settled["booking_ids"])
                # An accepted request never persisted is lost; one the database refused after
                # Redis accepted it means the two disagreed.
                run_.db["not_persisted"] = settled["not_persisted"]
                run_.db["rejected_after_202"] = settled["rejected_after_202"]
                run_.db["lost"] += settled["not_persisted"]
                run_.db["inconsistent"] += settled["rejected_after_202"]
            else:
                run_.db |= await check_database(bench.engine, sale, run_)
            summary = run_.summarize()
            log_run(summary)
            results.append(summary)

    return {
        "benchmark": "booking",
        "params": params.as_dict(),
        "target": target_label,
        "machine": machine_info() | versions | {"os": platform.platform()},
        "driver": {
            "kind": "multi-process asyncio (uvloop) + httptools, closed loop, keep-alive",
            "processes": params.driver_processes,
            "connections": params.connections,
        },
        "background_cores": round(background, 3),
        "api_settings": api_settings(bench.target),
        "managed": bench.target.managed,
        "references": {
            "noop": noop_summary,
            "pgbench": pgbench,
            "redis_benchmark": redis_ref,
        },
        "results": results,
    }


# --- report -----------------------------------------------------------------------------------


def by_key(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["strategy"], r["scenario"]): r for r in report.get("results", [])}


def goals(report: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """(goal, met (None: not measurable in this run), observed)."""
    noop = report["references"]["noop"]["rps"]
    rows = by_key(report)
    hot = {s: r["rps"] for (s, sc), r in rows.items() if sc == "hot_seat"}
    out: list[tuple[str, bool | None, str]] = []
    if hot and noop:
        best = max(hot, key=lambda s: hot[s])
        ratio = hot[best] / noop
        out.append(
            (
                f"best strategy on hot seat >= {GOAL_HOT_OVER_NOOP:.0%} of the no-op ceiling",
                ratio >= GOAL_HOT_OVER_NOOP,
                f"{best} {hot[best]:,.0f} req/s = {ratio:.1%} of {noop:,.0f} req/s",
            )
        )
    for strategy in ("redis_claim", "atomic"):
        letter = STRATEGY_LETTERS[strategy]
        what = f"{letter} ({strategy}) >= {GOAL_OVER_PESSIMISTIC:g}x B (pessimistic) on hot seat"
        if strategy in hot and "pessimistic" in hot and hot["pessimistic"]:
            ratio = hot[strategy] / hot["pessimistic"]
            out.append((what, ratio >= GOAL_OVER_PESSIMISTIC, f"{ratio:.2f}x"))
        else:
            out.append((what, None, "not measured in this run"))
    total = dict.fromkeys(VIOLATIONS, 0)
    for r in rows.values():
        for k, v in violations(r).items():
            total[k] += v
    out.append(
        (
            "zero correctness violations",
            not any(total.values()),
            ", ".join(f"{k} {v}" for k, v in total.items()),
        )
    )
    return out


def fmt_ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def results_table(report: dict[str, Any]) -> Table:
    noop = report["references"]["noop"]["rps"] or 1.0
    table = Table(title="booking benchmark: results (driver-side latency, ms)")
    for col in (
        "strategy",
        "scenario",
        "req",
        "req/s",
        "/no-op",
        "p50",
        "p95",
        "p99",
        "ok",
        "409",
        "err",
        "unans",
        "retries",
        "oversold",
        "double",
        "lost",
        "phantom",
        "db-caught",
    ):
        table.add_column(col, justify="left" if col in ("strategy", "scenario") else "right")
    n = report["references"]["noop"]
    table.add_row(
        "no-op",
        "GET /healthz",
        f"{n['requests']:,}",
        f"{n['rps']:,.0f}",
        "1.00",
        fmt_ms(n["latency_ms"]["p50"]),
        fmt_ms(n["latency_ms"]["p95"]),
        fmt_ms(n["latency_ms"]["p99"]),
        f"{n['successes']:,}",
        "-",
        str(n["errors"]),
        str(n["unanswered"]),
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
    )
    for r in report["results"]:
        v = violations(r)
        lat = r["latency_ms"]

        def red(k: str, v: dict[str, int] = v) -> str:
            return f"[bold red]{v[k]}[/bold red]" if v[k] else "0"

        table.add_row(
            f"{STRATEGY_LETTERS.get(r['strategy'], '?')} {r['strategy']}",
            SCENARIO_TITLES[r["scenario"]],
            f"{r['requests']:,}",
            f"{r['rps']:,.0f}",
            f"{r['rps'] / noop:.2f}",
            fmt_ms(lat["p50"]),
            fmt_ms(lat["p95"]),
            fmt_ms(lat["p99"]),
            f"{r['successes']:,}",
            f"{r['conflicts']:,}",
            f"[bold red]{r['errors']}[/bold red]" if r["errors"] else "0",
            red("unanswered"),
            f"{r['retries']:g}",
            red("oversold"),
            red("double_booked"),
            red("lost"),
            red("phantom"),
            str(r["db_caught_conflicts"]),
        )
    return table


def print_verdict(report: dict[str, Any], out_dir: Path) -> int:
    bad = [r for r in report.get("results", []) if any(violations(r).values())]
    errors = [r for r in report.get("results", []) if r["errors"]]
    for what, met, observed in goals(report):
        mark = {True: "[green]MET[/green]", False: "[yellow]NOT MET[/yellow]", None: "n/a"}[met]
        console.print(f"goal {mark}: {what} ({observed})")
    if bad:
        console.rule("[bold red]CORRECTNESS VIOLATIONS[/bold red]")
        for r in bad:
            console.print(
                f"[bold red]{r['strategy']} / {r['scenario']}: {violations(r)}[/bold red]"
            )
        console.rule()
    for r in errors:
        codes = ", ".join(
            f"{n} x {code}"
            for code, n in r["status"].items()
            if code not in ("0", "200", "201", "202", "409")
        )
        sample = (r["samples"] or [""])[0][:160]
        console.print(
            f"[yellow]{r['strategy']} / {r['scenario']}: error answers {codes}; e.g. {sample}"
            "[/yellow]"
        )
    console.print(f"wrote {out_dir}/REPORT.md, results.json, throughput.png, p99.png")
    # Error answers (e.g. 503 when the API's connection pool is exhausted) are reported above
    # and in the report; only correctness violations fail the run.
    return 1 if bad else 0


def write_reports(out_dir: Path, report: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    report["goals"] = [{"goal": g, "met": met, "observed": obs} for g, met, obs in goals(report)]
    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "REPORT.md").write_text(render_markdown(report))
    plot(report, out_dir)


# --- Markdown and plots -----------------------------------------------------------------------


def _ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}" if b else "-"


def _redis_rps(report: dict[str, Any], scenario: str) -> float | None:
    runs = report["references"]["redis_benchmark"].get("runs", {})
    want = "general admission" if scenario == "general_admission" else "hot seat"
    rps = next((r.get("rps") for name, r in runs.items() if want in name), None)
    return float(rps) if rps else None


def _sum_cores(r: dict[str, Any], *names: str) -> float:
    return float(sum(r["cpu_cores"].get(n, 0.0) for n in names))


def render_markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    m = report["machine"]
    refs = report["references"]
    noop = refs["noop"]
    pgb = refs["pgbench"]
    rb = refs["redis_benchmark"]
    pg_tps = float(pgb.get("tps", 0.0)) if pgb.get("available") else None
    results = report["results"]
    strategies = list(dict.fromkeys(r["strategy"] for r in results))
    lines = [
        "# Booking strategies under contention",
        "",
        f"Generated by `make bench-booking` (`python -m loadtests.bench_booking"
        f"{' --quick' if p['quick'] else ''}`) on {m['date']}; the whole run took "
        f"{report.get('total_wall_s', 0):.0f} s. Every figure below was measured in this run.",
        "",
        "## Workload",
        "",
        "| parameter | value |",
        "|---|---|",
        f"| mode | {'quick (smoke)' if p['quick'] else 'full'} |",
        f"| target | {report['target']} |",
        "| strategies | "
        + ", ".join(f"{STRATEGY_LETTERS.get(s, '?')} `{s}`" for s in strategies)
        + " |",
        f"| hot seat | {p['hot_clients']:,} fans race for one seat; {p['hot_seats']} rounds, one "
        "seat per round (the next round starts when every request of the last is answered) |",
        f"| spread | {p['spread_clients']:,} fans, each books one seat drawn at random from "
        f"{p['spread_seats']:,} (one round; same draws for every strategy) |",
        f"| general admission | {p['ga_buyers']:,} buyers x 1 ticket, stock {p['ga_stock']:,} "
        "(one round) |",
        f"| fans | {p['hot_clients']:,} / {p['spread_clients']:,} / {p['ga_buyers']:,} distinct "
        "fans (created in bulk in the database, real access tokens); one request per fan per "
        f"round; limit {MAX_PER_USER} tickets per fan per concert; a fresh concert per "
        "strategy x scenario |",
        f"| load driver | {p['connections']:,} keep-alive connections over "
        f"{p['driver_processes']} processes, closed loop, request timeout "
        f"{p['request_timeout_s']:g} s |",
        f"| API | `python -m app.api`, uvicorn with {p['api_workers']} worker processes; "
        + ", ".join(f"{k} {v}" for k, v in report.get("api_settings", {}).items())
        + (
            " (defaults, except a hold TTL long enough that no hold expires during the run) |"
            if report.get("managed")
            else " (this process's TR_* environment; the running API's own may differ) |"
        ),
        f"| no-op reference | `GET /healthz`, same driver, same {p['connections']:,} connections, "
        f"rounds of {p['connections']:,} requests for {p['reference_s']:g} s |",
        f"| pgbench reference | `{pgb.get('script', 'UPDATE bench_hot_row ...')}` "
        f"(`loadtests/pgbench_hot_row.sql`), `-M prepared -c {p['pgbench_clients']} "
        f"-j {p['pgbench_threads']} -T {p['pgbench_s']}`, throwaway database |",
        f"| redis-benchmark reference | `EVALSHA` of the claim scripts, "
        f"`-n {p['redis_requests']:,} -c {p['redis_clients']}` |",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| cores | {m['nproc']} ({m['cpu_model']}), shared by the API, PostgreSQL, Redis, the "
        "broker and the load driver; no pinning |",
        f"| software | Python {m['python']}, PostgreSQL {m.get('postgres', '?')}, Redis "
        f"{m.get('redis', '?')}, {m.get('os', m.get('platform', ''))} |",
        f"| date | {m['date']} |",
        f"| background load | {report.get('background_cores', 0):.2f} cores busy in a 1 s sample "
        "just before the run"
        + (
            " - the machine was not quiet (other work shares the cores), so the absolute "
            "figures are lower than a quiet machine would give; the runs of one report share "
            "the conditions |"
            if report.get("background_cores", 0) > QUIET_CORES
            else " |"
        ),
        "",
        "## Results",
        "",
        "Throughput = requests / time from the first request to the last answer of each round, "
        "summed over rounds. Latency is the driver's, from send to last byte (closed loop: it "
        "includes the wait for a worker and for a database connection). ok = 201 Created "
        "(202 Accepted for `redis_claim`), 409 = a conflict problem (seat taken, sold out, "
        "contention), err = any other answer, unans = no answer (timeout, reset). retries = "
        "growth of the API's `tr_booking_retries_total` for the strategy (C: transactions run "
        "again after a version conflict; D: lock acquisitions given up after "
        "`redis_lock_wait_ms`). The correctness "
        "columns come from the database after each run (see *Correctness*).",
        "",
        "| strategy | scenario | requests | req/s | / no-op | p50 ms | p95 ms | p99 ms | ok "
        "| 409 | err | unans | retries | oversold | double-booked | lost | 409 caught by DB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| no-op | `GET /healthz` | {noop['requests']:,} | {noop['rps']:,.0f} | 1.00 "
        f"| {fmt_ms(noop['latency_ms']['p50'])} | {fmt_ms(noop['latency_ms']['p95'])} "
        f"| {fmt_ms(noop['latency_ms']['p99'])} | {noop['successes']:,} | - | {noop['errors']} "
        f"| {noop['unanswered']} | - | - | - | - | - |",
    ]
    for r in results:
        lat = r["latency_ms"]
        v = violations(r)

        def bold(n: int) -> str:
            return f"**{n}**" if n else "0"

        lines.append(
            f"| {STRATEGY_LETTERS.get(r['strategy'], '?')} `{r['strategy']}` "
            f"| {SCENARIO_TITLES[r['scenario']]} | {r['requests']:,} | {r['rps']:,.0f} "
            f"| {_ratio(r['rps'], noop['rps'])} | {fmt_ms(lat['p50'])} | {fmt_ms(lat['p95'])} "
            f"| {fmt_ms(lat['p99'])} | {r['successes']:,} | {r['conflicts']:,} "
            f"| {bold(r['errors'])} | {bold(v['unanswered'])} | {r['retries']:g} "
            f"| {bold(v['oversold'])} | {bold(v['double_booked'])} | {bold(v['lost'])} "
            f"| {r['db_caught_conflicts']:,} |"
        )
    lines += ["", "![throughput](throughput.png)", "", "![p99 latency](p99.png)", ""]

    # references and ratios
    lines += [
        "## References (same run)",
        "",
        "| reference | throughput | p50 ms | p95 ms | p99 ms | notes |",
        "|---|---:|---:|---:|---:|---|",
        f"| no-op `GET /healthz` (HTTP ceiling) | {noop['rps']:,.0f} req/s "
        f"| {noop['latency_ms']['p50']:.1f} | {noop['latency_ms']['p95']:.1f} "
        f"| {noop['latency_ms']['p99']:.1f} | same driver and connections; driver CPU "
        f"{noop['driver_us_per_request']:.0f} µs/request, API "
        f"{noop['cpu_cores'].get('api', 0):.2f} cores, machine "
        f"{noop['cpu_cores'].get('machine_busy', 0):.2f} of {m['nproc']} cores busy |",
    ]
    if pgb.get("available"):
        pl = pgb["latency_ms"]
        lines.append(
            f"| pgbench, one hot row | {pgb['tps']:,.0f} tps | {pl['p50']:.1f} | {pl['p95']:.1f} "
            f"| {pl['p99']:.1f} | {pgb['clients']} clients, {pgb['transactions']:,} "
            f"transactions, {pgb['failed']} failed; {pgb['tool']} |"
        )
    else:
        lines.append(f"| pgbench | - | - | - | - | not run: {pgb.get('reason')} |")
    for name, r in rb.get("runs", {}).items():
        if r.get("available", True):
            rl = r["latency_ms"]
            lines.append(
                f"| redis-benchmark, {name} | {r['rps']:,.0f} req/s | {rl['p50']:.2f} "
                f"| {rl['p95']:.2f} | {rl['p99']:.2f} | EVALSHA, {r['script_from']}; "
                f"{rb.get('tool', '')} |"
            )
    if not rb.get("available", False):
        lines.append(f"| redis-benchmark | - | - | - | - | not run: {rb.get('reason')} |")
    lines += [
        "",
        "Ratios of each run's throughput to the references (a booking request is one HTTP "
        "request; it runs several SQL statements and, for D and F, Redis calls):",
        "",
        "| strategy | scenario | / no-op | / pgbench hot-row tps | / redis-benchmark claim |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['strategy']} | {SCENARIO_TITLES[r['scenario']]} "
            f"| {_ratio(r['rps'], noop['rps'])} | {_ratio(r['rps'], pg_tps)} "
            f"| {_ratio(r['rps'], _redis_rps(report, r['scenario']))} |"
        )

    # goals
    lines += ["", "## Goals", ""]
    for g in report.get("goals", []):
        mark = {True: "MET", False: "**NOT MET**", None: "not measured"}[g["met"]]
        lines.append(f"- {mark} - {g['goal']}: {g['observed']}")
    lines += ["", *cost_analysis(report)]

    # correctness
    lines += [
        "",
        "## Correctness (from the database after each run)",
        "",
        "- **oversold**: seats - active booking seats beyond the seats on sale; general "
        "admission - tickets in active bookings beyond the stock.",
        "- **double-booked**: seats with more than one active `booking_seat` row.",
        "- **lost**: a 201 whose booking is not an active booking of that concert in the "
        "database (for `redis_claim`: a 202 whose request the consumer never persisted).",
        "- **unanswered**: requests without a response (timeout or reset).",
        "- **phantom** (extra): a booking in the database whose request was answered with an "
        "error (e.g. 503): the fan was told it failed. Counted beyond the unanswered requests.",
        "- **inconsistent** (extra): seat status that disagrees with its active booking rows, "
        "stock + sold != total, or (`redis_claim`) a 202 the database refused later.",
        "- **unsold** (not a violation): seats some fan asked for, or general-admission "
        "tickets, left unsold - a strategy that turned every fan for them away.",
        "",
        "| strategy | scenario | available | sold (DB) | 201/202 | unsold | oversold "
        "| double-booked | lost | unanswered | phantom | inconsistent |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        db, v = r["db"], violations(r)
        lines.append(
            f"| {r['strategy']} | {SCENARIO_TITLES[r['scenario']]} | {db.get('available', 0):,} "
            f"| {db.get('sold', 0):,} | {r['successes']:,} | {db.get('unsold', 0):,} "
            f"| {v['oversold']} | {v['double_booked']} | {v['lost']} | {v['unanswered']} "
            f"| {v['phantom']} | {v['inconsistent']} |"
        )
    total_bad = sum(sum(violations(r).values()) for r in results)
    lines += [
        "",
        "**All correctness counters are 0.**"
        if total_bad == 0
        else f"**{total_bad} CORRECTNESS VIOLATIONS - see the table above.**",
    ]

    # strategy A
    a_runs = [r for r in results if r["strategy"] == "inprocess"]
    if a_runs:
        lines += [
            "",
            "## Strategy A (`inprocess`) across 2 processes",
            "",
            "A keeps an `asyncio.Lock` per seat (or per concert's stock) inside the API "
            "process. With 2 uvicorn workers there are two independent lock tables: a request "
            'in worker 1 and one in worker 2 for the same seat both get "the" lock, both read '
            "the seat as available (read committed, before either commits) and both write. "
            "Its write is unconditional (`UPDATE seat SET status = 'held'`) - the lock is the "
            "strategy's only guard - so the second transaction is stopped only by the database: "
            "the partial unique index `uq_booking_seat_active_seat` (seats) or "
            "`CHECK (stock >= 0)` (general admission). It takes the two workers' first requests "
            "for a seat overlapping within a transaction's time (later ones find the seat "
            "taken), so the count is small - but it is not zero, and each one is a race the "
            "strategy itself lost. Those conflicts come back as 409s whose detail ends with "
            f'"{DB_CAUGHT_SUFFIX}":',
            "",
            "| scenario | 409s | caught only by the database | share |",
            "|---|---:|---:|---:|",
        ]
        for r in a_runs:
            share = r["db_caught_conflicts"] / r["conflicts"] if r["conflicts"] else 0.0
            lines.append(
                f"| {SCENARIO_TITLES[r['scenario']]} | {r['conflicts']:,} "
                f"| {r['db_caught_conflicts']:,} | {share:.1%} |"
            )
        others = sum(r["db_caught_conflicts"] for r in results if r["strategy"] != "inprocess")
        lines += [
            "",
            "In one process A would be correct on its own; across processes it only looks "
            "correct because the constraints hold (oversold and double-booked stay 0 above). "
            f"The other strategies had {others} database-caught conflicts in total: their own "
            "mechanism (row lock, version check, Redis lock + fencing token, conditional "
            "UPDATE, Redis claim) decided every race.",
        ]

    # where the time goes
    lines += [
        "",
        "## Where the time went",
        "",
        "CPU in cores over each run (from `/proc`; the machine has "
        f"{m['nproc']}): the API's processes (uvicorn supervisor and workers), the booking "
        "consumer, PostgreSQL (postmaster and backends alive at the end of the run - backends "
        "opened and closed within it are missed), redis-server, the driver processes, and "
        "`other` = the machine's busy time minus all of these (kernel, interrupts, the broker, "
        "anything else running). `PG sessions` = PostgreSQL connections opened during the run "
        "(`pg_stat_database.sessions`): the API's pool keeps 10 per worker and opens up to 10 "
        "more under load, closing them again when the burst is over.",
        "",
        f"Machine busy before the run (1 s idle sample): {report.get('background_cores', 0):.2f} "
        "cores.",
        "",
        "| strategy | scenario | API | consumer | PostgreSQL | redis | driver | other "
        "| machine busy | API ms CPU/req | driver µs/req | PG sessions | conflict types "
        "| server outcomes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in [noop, *results]:
        c = r["cpu_cores"]
        known = sum(c.get(k, 0.0) for k in ("api", "consumer", "postgres", "redis", "driver"))
        other = max(c.get("machine_busy", 0.0) - known, 0.0)
        api_ms = c.get("api", 0.0) / r["rps"] * 1000 if r["rps"] else 0.0
        types = ", ".join(f"{k} {v:,}" for k, v in r["conflict_types"].items()) or "-"
        outcomes = ", ".join(f"{k} {v:,}" for k, v in r["server_outcomes"].items()) or "-"
        sessions = r.get("pg_sessions_opened")
        lines.append(
            f"| {r['strategy']} | {SCENARIO_TITLES.get(r['scenario'], r['scenario'])} "
            f"| {c.get('api', 0):.2f} | {c.get('consumer', 0):.2f} | {c.get('postgres', 0):.2f} "
            f"| {c.get('redis', 0):.2f} | {c.get('driver', 0):.2f} | {other:.2f} "
            f"| {c.get('machine_busy', 0):.2f} | {api_ms:.2f} | {r['driver_us_per_request']:.0f} "
            f"| {sessions if sessions is not None else '-'} | {types} | {outcomes} |"
        )
    f_runs = [r for r in results if r["strategy"] == ASYNC_STRATEGY]
    if f_runs:
        lines += ["", "`redis_claim` persistence (202 accepted -> consumer wrote PostgreSQL):", ""]
        for r in f_runs:
            e2e = (
                r["requests"] / (r["duration_s"] + r["persist_s"])
                if r.get("persist_s") is not None and r["duration_s"]
                else 0.0
            )
            persisted = (
                f"everything persisted {r['persist_s']:.1f} s after the last answer "
                f"({r['successes']:,} accepted; requests / (run + persistence) = {e2e:,.0f} "
                "req/s)"
                if r.get("persist_s") is not None
                else f"NOT complete ({r['db'].get('not_persisted')} missing)"
            )
            lines.append(f"- {SCENARIO_TITLES[r['scenario']]}: {persisted}")

    lines += ["", "## When each strategy fits", ""]
    lines += recommendations(report)
    lines += [
        "",
        "## How the load was generated",
        "",
        "`loadtests/booking_scenarios.py`: several OS processes, each with its own uvloop event "
        "loop and its share of the keep-alive HTTP/1.1 connections; requests are encoded before "
        "the clock starts, responses parsed with httptools (llhttp, the parser uvicorn uses). A "
        "round starts all its requests at once and ends when the last is answered - for the hot "
        "seat that is 1,000 requests for one seat in flight together. Why not locust: the "
        "scenarios need a barrier per round across driver processes and every response's "
        "booking id / 409 detail for the correctness checks, which locust's independently "
        "looping users and aggregated stats do not give; and on a 2-core machine that the API "
        "and PostgreSQL share, the driver's CPU per request matters: here it was "
        f"{noop['driver_us_per_request']:.0f} µs per no-op request "
        f"({noop['cpu_cores'].get('driver', 0):.2f} cores at {noop['rps']:,.0f} req/s). "
        "When the driver was chosen (a one-off comparison on this machine, not part of this "
        "run: the same API, `GET /healthz`, 100 connections over 2 processes, 5 s each, "
        "back to back) locust 2.47 with `FastHttpUser` (geventhttpclient) used 93-108 µs of CPU "
        "per request and reached 2,300-6,200 req/s, this driver 29-37 µs and 4,100-8,100 "
        "req/s: locust would have taken about three times the CPU from the cores the API "
        "needs and understated the ceiling.",
        "",
        "Raw data: `results.json` (per run: status counts, latency percentiles, conflict types, "
        "the API's outcome counters, database counters, CPU).",
        "",
    ]
    return "\n".join(lines)


def api_ms_per_request(r: dict[str, Any]) -> float:
    return float(r["cpu_cores"].get("api", 0.0)) / r["rps"] * 1000 if r["rps"] else 0.0


def cost_analysis(report: dict[str, Any]) -> list[str]:
    """Why the booking figures sit where they do, from this run's own numbers."""
    noop = report["references"]["noop"]
    hot = [r for r in report["results"] if r["scenario"] == "hot_seat"]
    if not hot or not noop["rps"]:
        return []
    best = max(hot, key=lambda r: r["rps"])
    pgb = report["references"]["pgbench"]
    lines = [
        "What limits the booking figures (this run): the API used "
        f"{api_ms_per_request(noop):.2f} ms of CPU per no-op request and "
        f"{api_ms_per_request(best):.2f} ms per hot-seat booking request with the fastest "
        f"strategy (`{best['strategy']}`, {best['rps']:,.0f} req/s), "
        f"{api_ms_per_request(best) / max(api_ms_per_request(noop), 1e-9):.0f}x as much; "
        f"the machine was {best['cpu_cores'].get('machine_busy', 0):.2f} of "
        f"{report['machine']['nproc']} cores busy during that run. The hot row itself is not the "
        "limit: "
        + (
            f"pgbench updates one row {pgb['tps']:,.0f} times a second on the same server, "
            if pgb.get("available")
            else ""
        )
        + "and a Redis claim script runs tens of thousands of times a second. Per hot-seat "
        "request (API CPU, ms): "
        + ", ".join(f"`{r['strategy']}` {api_ms_per_request(r):.2f}" for r in hot)
        + ". So the strategies differ less than their contention handling suggests: the fixed "
        "cost of a booking request (authentication, database sessions and round trips, "
        "response) dominates, and a strategy stands out only where it removes database work "
        "from the request (F answers conflicts from Redis) or adds waiting (lock polling, "
        "retries).",
    ]
    phantoms = [r for r in report["results"] if violations(r)["phantom"]]
    if phantoms:
        lines += [
            "",
            "**Booked, but told it failed**: "
            + "; ".join(
                f"`{r['strategy']}` {SCENARIO_TITLES[r['scenario']]}: "
                f"{violations(r)['phantom']:,} of {r['errors']:,} error answers"
                for r in phantoms
            )
            + " came for requests whose hold the database has (and no request went "
            "unanswered): the API committed the hold and then failed the request. Those fans "
            "hold seats they were told they did not get (until the hold expires), and a retry "
            "without an Idempotency-Key books again.",
        ]
    errors = [r for r in report["results"] if r["errors"]]
    pool = report.get("api_settings", {})
    if errors:
        lines += [
            "",
            "Error answers (nothing was sold twice or lost"
            + (", apart from the phantom bookings above" if phantoms else "")
            + "): "
            + "; ".join(
                f"`{r['strategy']}` {SCENARIO_TITLES[r['scenario']]}: "
                + ", ".join(
                    f"{n:,} x {code}"
                    for code, n in r["status"].items()
                    if code not in ("0", "200", "201", "202", "409")
                )
                for r in errors
            )
            + ". A 503 is the API's answer when a request waited longer than its database "
            f"pool timeout ({pool.get('db_pool_timeout_s', '?')} s) for a connection: with "
            f"{report['params']['connections']:,} clients in flight and "
            f"{report['params']['api_workers']} x "
            f"{pool.get('db_pool_size', 0) + pool.get('db_max_overflow', 0)} pooled connections "
            "the queue gets that long at these throughputs. A 500 is an unhandled error (see "
            "the API log). Examples are in `results.json` (`samples`).",
        ]
    return lines


def recommendations(report: dict[str, Any]) -> list[str]:
    rows = by_key(report)

    def rps(strategy: str, scenario: str) -> str:
        r = rows.get((strategy, scenario))
        return f"{r['rps']:,.0f} req/s" if r else "not measured"

    def p99(strategy: str, scenario: str) -> str:
        r = rows.get((strategy, scenario))
        return f"p99 {fmt_ms(r['latency_ms']['p99'])} ms" if r else ""

    def field_(strategy: str, scenario: str, key: str) -> float:
        r = rows.get((strategy, scenario))
        return float(r.get(key, 0) or 0) if r else 0.0

    def unsold(strategy: str) -> str:
        r = rows.get((strategy, "general_admission"))
        if not r or not r["db"].get("unsold"):
            return ""
        return (
            f" It left {r['db']['unsold']:,} of {r['db']['available']:,} general-admission "
            "tickets unsold while turning buyers away with 409 "
            f"({r['conflict_types'].get('booking-contention', 0):,} x booking-contention)."
        )

    text_ = {
        "inprocess": (
            "only with a single API process (a dev box, a one-worker deployment). Across "
            "processes its lock is local: "
            f"{field_('inprocess', 'hot_seat', 'db_caught_conflicts'):,.0f} hot-seat "
            "conflicts here were caught only by the database constraint. Never the only "
            "guard; useful as a cheap in-process queue in front of E."
        ),
        "pessimistic": (
            "read-check-write logic that cannot be one statement (several rows, rules in "
            "code) at low or moderate contention. On a hot row every loser queues on the row "
            "lock, which is held across application round trips: hot seat "
            f"{rps('pessimistic', 'hot_seat')} ({p99('pessimistic', 'hot_seat')}), "
            f"general admission {rps('pessimistic', 'general_admission')}." + unsold("pessimistic")
        ),
        "optimistic": (
            "low contention (many seats, few collisions): no locks, one extra version "
            f"check (spread {rps('optimistic', 'spread')}). Under a hot row it burns work in "
            f"retries ({field_('optimistic', 'general_admission', 'retries'):,.0f} retries on "
            f"general admission, {rps('optimistic', 'general_admission')})." + unsold("optimistic")
        ),
        "redis_lock": (
            "when the critical section spans more than the database (a call to another "
            "system while holding the seat). The fencing token keeps it safe when a lease "
            "expires, but every request pays Redis round trips and losers poll: hot seat "
            f"{rps('redis_lock', 'hot_seat')} ({p99('redis_lock', 'hot_seat')}), "
            f"{field_('redis_lock', 'hot_seat', 'retries'):,.0f} lock give-ups; general "
            "admission is one lock for the whole stock, so every buyer queues behind it."
            + unsold("redis_lock")
        ),
        "atomic": (
            "the default whenever the claim is one conditional UPDATE (a seat's status, a "
            "stock counter): no lock held across round trips, losers fail in one statement: hot "
            f"seat {rps('atomic', 'hot_seat')}, spread {rps('atomic', 'spread')}, general "
            f"admission {rps('atomic', 'general_admission')}."
        ),
        "redis_claim": (
            "flash sales whose burst the database cannot absorb: Redis decides in one Lua "
            "call, the fan gets 202 and the consumer persists through Kafka (hot seat "
            f"{rps('redis_claim', 'hot_seat')}). Costs: a consumer to run, asynchronous "
            "results to poll, a reconciliation job for a Redis loss."
        ),
    }
    strategies = list(dict.fromkeys(r["strategy"] for r in report["results"]))
    return [
        f"- **{STRATEGY_LETTERS.get(s, '?')} `{s}`**: {text_[s]}" for s in strategies if s in text_
    ]


def plot(report: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = by_key(report)
    strategies = list(dict.fromkeys(r["strategy"] for r in report["results"]))
    noop = report["references"]["noop"]["rps"]
    width = 0.8 / max(len(strategies), 1)
    xs = list(range(len(SCENARIOS)))
    p = report["params"]
    subtitle = (
        f"{p['api_workers']} API workers, {p['connections']:,} connections, "
        f"{report['machine']['nproc']} cores shared"
    )
    for name, key, ylabel, title in (
        ("throughput.png", "rps", "requests / s", "throughput per strategy"),
        ("p99.png", "p99", "p99 latency, ms (driver side)", "p99 latency per strategy"),
    ):
        fig, ax = plt.subplots(figsize=(11, 5))
        for i, strategy in enumerate(strategies):
            values = []
            for scenario in SCENARIOS:
                r = rows.get((strategy, scenario))
                if r is None:
                    values.append(0.0)
                elif key == "rps":
                    values.append(float(r["rps"]))
                else:
                    values.append(float(r["latency_ms"]["p99"]))
            offset = (i - (len(strategies) - 1) / 2) * width
            bars = ax.bar(
                [x + offset for x in xs],
                values,
                width,
                label=f"{STRATEGY_LETTERS.get(strategy, '?')} {strategy}",
            )
            labels = [f"{v:,.0f}" for v in values]
            ax.bar_label(bars, labels=labels, fontsize=7, rotation=90, padding=2)
        tallest = max(
            (float(r["rps"]) for r in report["results"]),
            default=0.0,
        )
        if key == "rps" and noop and noop > 3 * tallest:
            title += f" - no-op ceiling {noop:,.0f} req/s is off this scale"
        elif key == "rps" and noop:
            ax.axhline(noop, color="grey", linestyle="--", linewidth=1)
            ax.text(
                len(SCENARIOS) - 0.5,
                noop,
                f"no-op ceiling {noop:,.0f}",
                ha="right",
                va="bottom",
                fontsize=8,
                color="grey",
            )
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xticks(xs, [SCENARIO_TITLES[s] for s in SCENARIOS])
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} ({subtitle})")
        ax.legend(
            fontsize=8,
            ncols=min(len(strategies), 6),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.07),
            frameon=False,
        )
        ax.margins(y=0.15)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)


# --- CLI --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> tuple[Params, Path, str | None]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "booking")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument(
        "--strategies",
        default="",
        help="comma-separated (default: every strategy in build_registry())",
    )
    parser.add_argument("--base-url", default=None, help="drive an API that is already running")
    parser.add_argument("--driver-processes", type=int, default=2)
    parser.add_argument("--connections", type=int, default=None, help="default: hot-seat clients")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--hot-seats", type=int, default=None, help="hot-seat rounds")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="only write REPORT.md and the plots again from an earlier results.json",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        raise SystemExit(render_again(args.render, args.out))
    names = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    strategies = names or tuple(strategies_available())
    over: dict[str, Any] = {"driver_processes": max(args.driver_processes, 1)}
    if args.seed is not None:
        over["seed"] = args.seed
    if args.hot_seats is not None:
        over["hot_seats"] = args.hot_seats
    params = (quick_params if args.quick else full_params)(strategies, **over)
    if args.connections:
        params = dataclasses.replace(params, connections=args.connections)
    return params, args.out, args.base_url


def render_again(results_json: Path, out_dir: Path) -> int:
    report = json.loads(results_json.read_text())
    write_reports(out_dir, report)
    console.print(results_table(report))
    return print_verdict(report, out_dir)


def main(argv: list[str] | None = None) -> None:
    params, out_dir, base_url = parse_args(argv)
    raise SystemExit(asyncio.run(run(params, out_dir, base_url)))


if __name__ == "__main__":
    main()
