"""Catalog read benchmark: concert detail reads from a warm and a cold cache against a no-op.

    python -m loadtests.bench_catalog --out reports/catalog [--workers 2] [--concurrency 64]

One run, one API (its own uvicorn with `--workers` workers on a free port, started and stopped
here), three closed-loop phases with the same wrk settings, each after a warm-up:

  noop  GET /healthz               constant JSON through the same middleware: the ceiling
  warm  GET /concerts/{id}         every concert already in the Redis cache
  cold  GET /concerts/{id}         every request a miss that loads from PostgreSQL

Cold works by invalidation rounds: wrk cycles through `--concerts` concerts (each wrk process owns
a disjoint share, so a concert comes back only after all the others of its share), while this
process bumps every concert's cache generation every `--invalidate-ms` - the same INCR that
`ResponseCache.invalidate` does, one Lua call per round. Between two requests for one concert
there are many rounds, so each lookup finds a new generation and misses. The API's own counters
(`tr_cache_requests_total`, `tr_cache_loads_total`) are read before and after every measured
window to prove it: the run fails if a cold lookup found any entry or a warm one needed the DB.

The figures only mean something on an otherwise idle machine with the connections spread over
all workers: each phase waits for a quiet machine, and a measured run is repeated when other
processes took CPU or when uvicorn handed (nearly) all connections to one worker.

PostgreSQL, Redis and the broker are the local stack's (`.run/stack.env`; `ticket-rush stack up`
is run if it is missing); the catalog lives in a throwaway database and a private Redis key
prefix, both removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.catalog.concert.service import concert_namespace
from app.core.cache import SCHEMA_VERSION, ResponseCache
from app.core.config import PROJECT_ROOT, get_settings
from app.devstack import StackError
from app.devstack.broker import free_port, spawn, stop_process
from app.devstack.stack import load_stack_env
from loadtests.loadgen import (
    CpuMeter,
    LoadGenError,
    Samples,
    WrkResult,
    descendants,
    established_connections,
    machine_busy_s,
    machine_info,
    parent_pid,
    process_cpu_s,
    require_wrk,
    run_wrk,
    sample_delta,
    scrape,
    wrk_version,
)

CACHE_NAME = "concert_detail"
DETAIL_ROUTE = "/concerts/{concert_id}"
GOAL_WARM_OVER_NOOP = 0.80
COLD_MIN_LOAD_SHARE = 0.999
# A measured run counts only if every API worker holds at least this fraction of its fair share
# of the connections (enough to keep it busy), else it is abandoned half a second in and started
# again, up to SPLIT_RETRIES times; then the last split is kept (with a warning).
MIN_WORKER_SHARE = 0.5
SPLIT_RETRIES = 10
# A measured run during which other processes used more than QUIET_OTHER_CORES is measured again
# (after waiting for a quiet machine), up to NOISE_RETRIES times.
NOISE_RETRIES = 2
# Seconds a phase may spend between warm-up and the end of its measured run beyond the two
# (split retries, scrapes); with the warm-up and duration it must fit in the cache freshness.
TTL_MARGIN_S = 15
# More CPU than this (cores) used outside the benchmark's processes: the machine was not quiet.
QUIET_OTHER_CORES = 0.3
API_START_TIMEOUT_S = 60.0
SETUP_CONCURRENCY = 32
ADMIN_EMAIL = "bench-admin@ticketrush.io"
# Counters settle once the requests wrk left in flight at its deadline are answered.
SETTLE_S = 0.3

# One round of invalidation: the INCR of ResponseCache.invalidate for every concert, in one call.
# (Keys of many hash slots in one script: fine on the standalone Redis of a benchmark.)
_BUMP_GENERATIONS = "for _, key in ipairs(KEYS) do redis.call('INCR', key) end return #KEYS"

# Wide enough for the result tables when the output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 170)


@dataclass(frozen=True, slots=True)
class Params:
    workers: int
    concurrency: int
    duration_s: int
    warmup_s: int
    concerts: int
    wrk_processes: int
    wrk_stagger_s: float
    invalidate_every_ms: float
    quiet_wait_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "concurrency": self.concurrency,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "concerts": self.concerts,
            "wrk_processes": self.wrk_processes,
            "wrk_stagger_s": self.wrk_stagger_s,
            "invalidate_every_ms": self.invalidate_every_ms,
            "quiet_wait_s": self.quiet_wait_s,
        }


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    title: str
    route: str
    paths: list[str]


@dataclass
class PhaseResult:
    phase: Phase
    wrk: WrkResult
    cache: dict[str, float]  # lookups by result during the measured window
    loads: float
    http_status: dict[str, float]
    server_mean_ms: float | None
    cpu_s: dict[str, float]
    worker_cpu_s: list[float]
    invalidation_rounds: int | None = None
    pg_sessions_opened: int = 0
    connections_per_worker: list[int] = field(default_factory=list)
    attempts: int = 1

    @property
    def lookups(self) -> float:
        return sum(self.cache.values())

    @property
    def hit_ratio(self) -> float | None:
        return self.cache.get("hit", 0.0) / self.lookups if self.lookups else None

    @property
    def api_us_per_request(self) -> float | None:
        """API CPU per request the server answered: hardly moved by what else runs."""
        served = sum(self.http_status.values())
        return self.cpu_s.get("api", 0.0) / served * 1e6 if served else None

    def cores(self, name: str) -> float:
        return self.cpu_s.get(name, 0.0) / self.wrk.duration_s if self.wrk.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.phase.name,
            "title": self.phase.title,
            "route": self.phase.route,
            "distinct_paths": len(self.phase.paths),
            "requests": self.wrk.requests,
            "duration_s": round(self.wrk.duration_s, 3),
            "rps": round(self.wrk.rps, 1),
            "latency_ms": {k: round(v, 3) for k, v in self.wrk.latency_ms.items()},
            "errors": self.wrk.errors,
            "error_count": self.wrk.error_count,
            "bytes": self.wrk.bytes,
            "server": {
                "http_status": self.http_status,
                "mean_latency_ms": (
                    round(self.server_mean_ms, 3) if self.server_mean_ms is not None else None
                ),
                "cache_lookups": self.cache,
                "cache_loads": self.loads,
                "hit_ratio": self.hit_ratio,
                "api_cpu_us_per_request": self.api_us_per_request,
            },
            "cpu_cores": {k: round(self.cores(k), 3) for k in self.cpu_s},
            "api_worker_cores": [round(s / self.wrk.duration_s, 3) for s in self.worker_cpu_s],
            "invalidation_rounds": self.invalidation_rounds,
            "pg_sessions_opened": self.pg_sessions_opened,
            "connections_per_worker": self.connections_per_worker,
            "attempts": self.attempts,
        }


@dataclass
class Bench:
    """The resources of one run; `cleanup()` releases whatever was created."""

    params: Params
    stack_env: dict[str, str] = field(default_factory=dict)
    db_url: str = ""
    redis_prefix: str = ""
    base_url: str = ""
    api_pid: int | None = None
    api_log: Path | None = None
    metrics_dir: Path | None = None
    redis: Redis | None = None
    concert_ids: list[int] = field(default_factory=list)


# --- setup ------------------------------------------------------------------------------------


def ensure_stack_env() -> dict[str, str]:
    """The local stack's connection settings, running `ticket-rush stack up` if there are none."""
    run_dir = get_settings().run_dir
    with contextlib.suppress(StackError):
        return load_stack_env(run_dir)
    console.print("no .run/stack.env: running `ticket-rush stack up`")
    subprocess.run([sys.executable, "-m", "app.cli", "stack", "up"], cwd=PROJECT_ROOT, check=True)
    return load_stack_env(run_dir)


async def create_database(server_url: str, name: str) -> str:
    url = make_url(server_url)
    engine = create_async_engine(
        url.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(db_url: str) -> None:
    url = make_url(db_url)
    engine = create_async_engine(
        url.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    finally:
        await engine.dispose()


def run_cli(args: list[str], env: dict[str, str], log: Path) -> None:
    """`python -m app.cli ARGS` with the bench's environment; output to `log`."""
    with log.open("ab") as out:
        code = subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        ).returncode
    if code != 0:
        raise RuntimeError(f"`ticket-rush {' '.join(args)}` failed (exit {code}); see {log}")


def api_env(bench: Bench, port: int) -> dict[str, str]:
    assert bench.metrics_dir is not None
    return {
        **os.environ,
        **bench.stack_env,
        "TR_DATABASE_URL": bench.db_url,
        "TR_REDIS_PREFIX": bench.redis_prefix,
        "TR_API_HOST": "127.0.0.1",
        "TR_API_PORT": str(port),
        "TR_API_WORKERS": str(bench.params.workers),
        # Set for any worker count, so every run counts through the same multiprocess code.
        "PROMETHEUS_MULTIPROC_DIR": str(bench.metrics_dir),
    }


async def start_api(bench: Bench, env: dict[str, str], port: int) -> None:
    assert bench.api_log is not None
    proc = spawn([sys.executable, "-m", "app.api"], bench.api_log, env=env, cwd=PROJECT_ROOT)
    bench.api_pid = proc.pid
    bench.base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + API_START_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the API exited with code {proc.returncode}; see {bench.api_log}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{bench.base_url}/healthz")).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API is not healthy after {API_START_TIMEOUT_S:g} s")
            await asyncio.sleep(0.2)
    # uvicorn's supervisor answers as soon as one worker does: wait for all of them.
    while len(api_workers(bench)) < bench.params.workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {bench.params.workers} API workers after start")
        await asyncio.sleep(0.2)


def api_workers(bench: Bench) -> list[int]:
    """The uvicorn worker pids (the supervisor itself when it serves alone)."""
    assert bench.api_pid is not None
    if bench.params.workers == 1:
        return [bench.api_pid]
    workers = []
    for pid in descendants(bench.api_pid)[1:]:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            # multiprocessing's resource tracker is a child too, but serves nothing.
            if b"resource_tracker" not in cmdline:
                workers.append(pid)
    return workers


async def create_catalog(bench: Bench, password: str) -> list[int]:
    """Agency, artists, venues and `params.concerts` concerts, through the API as the admin."""
    async with httpx.AsyncClient(base_url=bench.base_url, timeout=30) as client:
        login = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": password})
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

        async def post(path: str, body: dict[str, Any]) -> int:
            response = await client.post(path, json=body)
            if response.status_code != 201:
                raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
            return int(response.json()["id"])

        agency = await post("/agencies", {"name": "Bench Entertainment", "country": "KR"})
        artists = [
            await post("/artists", {"agency_id": agency, "name": f"Bench Artist {i}"})
            for i in range(8)
        ]
        venues = [
            await post("/venues", {"name": f"Bench Hall {i}", "city": "Seoul", "country": "KR"})
            for i in range(4)
        ]
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
        limit = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def concert(i: int) -> int:
            async with limit:
                return await post(
                    "/concerts",
                    {
                        "title": f"Bench Concert {i}",
                        "artist_id": artists[i % len(artists)],
                        "venue_id": venues[i % len(venues)],
                        "starts_at": (start + timedelta(hours=i)).isoformat(),
                    },
                )

        return list(await asyncio.gather(*(concert(i) for i in range(bench.params.concerts))))


# --- cold-cache invalidation ------------------------------------------------------------------


def generation_key(prefix: str, concert_id: int) -> str:
    """The generation counter `ResponseCache.invalidate(concert_namespace(id))` increments."""
    return f"{prefix}:cache:{SCHEMA_VERSION}:{{{concert_namespace(concert_id)}}}:gen"


async def check_generation_key(redis: Redis, prefix: str, concert_id: int) -> None:
    """Fail fast if the key scheme drifted: the app's own invalidate must bump our key."""
    cache = ResponseCache(
        redis, prefix=prefix, ttl_s=60, jitter=0.0, negative_ttl_s=10, lock_ttl_ms=1000
    )
    key = generation_key(prefix, concert_id)
    before = int(await redis.get(key) or 0)
    await cache.invalidate(concert_namespace(concert_id))
    after = int(await redis.get(key) or 0)
    if after != before + 1:
        raise RuntimeError(f"{key} is not the cache generation key of concert {concert_id}")


async def bump_generations(redis: Redis | None, prefix: str, concert_ids: list[int]) -> None:
    """One invalidation round: every concert's cached detail becomes unreachable."""
    assert redis is not None
    keys = [generation_key(prefix, i) for i in concert_ids]
    await redis.register_script(_BUMP_GENERATIONS)(keys=keys)


@contextlib.asynccontextmanager
async def invalidating(
    redis: Redis, prefix: str, concert_ids: list[int], every_s: float
) -> AsyncIterator[list[int]]:
    """Bump every concert's cache generation every `every_s` while the block runs.

    Yields a one-element list holding the number of completed rounds.
    """
    bump = redis.register_script(_BUMP_GENERATIONS)
    keys = [generation_key(prefix, i) for i in concert_ids]
    rounds = [0]

    async def loop() -> None:
        while True:
            await bump(keys=keys)
            rounds[0] += 1
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop())
    try:
        await asyncio.sleep(0)  # the first round runs before any request
        yield rounds
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- phases -----------------------------------------------------------------------------------


async def postmaster(db_url: str) -> dict[str, int]:
    """{"postgres": pid of the postmaster} when PostgreSQL runs on this machine, else {}.

    Its whole tree is measured: the pools open and close connections under load, so backends
    come and go during a window (other databases' backends count too: a quiet machine matters).
    """
    engine = create_async_engine(db_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            backend = int(await conn.scalar(text("SELECT pg_backend_pid()")) or 0)
            # The postmaster is our backend's parent (read before the connection closes).
            parent = parent_pid(backend)
    finally:
        await engine.dispose()
    return {"postgres": parent} if parent else {}


async def postgres_sessions(db_url: str) -> int:
    """Connections ever opened to the bench database (PostgreSQL's own counter)."""
    engine = create_async_engine(db_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            # Statistics of other backends are flushed lazily: ask for a fresh snapshot.
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            value = await conn.scalar(
                text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            )
            return int(value or 0)
    finally:
        await engine.dispose()


async def redis_server_pid(redis: Redis) -> list[int]:
    info = await redis.info("server")
    pid = int(info.get("process_id", 0))
    return [pid] if pid and process_cpu_s(pid) is not None else []


def server_mean_ms(before: Samples, after: Samples, route: str) -> float | None:
    total = sample_delta(before, after, "tr_http_request_duration_seconds_sum", route=route)
    count = sample_delta(before, after, "tr_http_request_duration_seconds_count", route=route)
    n = sum(count.values())
    return sum(total.values()) / n * 1000 if n else None


async def run_phase(
    bench: Bench, client: httpx.AsyncClient, phase: Phase, *, cold: bool
) -> PhaseResult:
    params = bench.params
    assert bench.redis is not None and bench.api_pid is not None
    workers = api_workers(bench)
    port = int(bench.base_url.rpartition(":")[2])
    split: dict[int, int] = {}

    async def balanced() -> bool:
        # uvicorn's workers share one listening socket and each drains the accept queue when it
        # wakes, so a burst of new connections can land on one worker and leave another idle.
        split.clear()
        split.update(established_connections(workers, port))
        held = sum(split.values())
        return held > 0 and well_spread(list(split.values()))

    async def wrk(seconds: int, probe: Callable[[], Awaitable[bool]] | None) -> WrkResult | None:
        return await run_wrk(
            bench.base_url,
            phase.paths,
            duration_s=seconds,
            connections=params.concurrency,
            processes=params.wrk_processes,
            stagger_s=params.wrk_stagger_s,
            probe=probe,
        )

    async def accept_last() -> bool:
        await balanced()
        return True

    async with contextlib.AsyncExitStack() as stack:
        rounds = None
        if cold:
            rounds = await stack.enter_async_context(
                invalidating(
                    bench.redis,
                    bench.redis_prefix,
                    bench.concert_ids,
                    params.invalidate_every_ms / 1000,
                )
            )

        async def warm_up() -> None:
            await wait_quiet(params.quiet_wait_s)
            if phase.name == "warm":
                # Entries filled earlier expire at scattered times (TTL jitter): start from an
                # empty cache so the warm-up fills every entry now and all stay fresh for the
                # measured run.
                await bump_generations(bench.redis, bench.redis_prefix, bench.concert_ids)
            console.print(f"  {phase.name}: warm-up {params.warmup_s} s")
            await wrk(params.warmup_s, None)
            await asyncio.sleep(SETTLE_S)

        await warm_up()
        meter = CpuMeter(
            {
                "api": descendants(bench.api_pid),
                "redis_server": await redis_server_pid(bench.redis),
            },
            trees=await postmaster(bench.db_url),
        )
        metrics_url = f"{bench.base_url}/metrics"
        result = None
        attempt = split_retries = noise_retries = 0
        while result is None:
            attempt += 1
            any_split = split_retries >= SPLIT_RETRIES or len(workers) == 1
            before = await scrape(client, metrics_url)
            sessions_before = await postgres_sessions(bench.db_url)
            rounds_before = rounds[0] if rounds else 0
            console.print(f"  {phase.name}: measuring {params.duration_s} s (attempt {attempt})")
            meter.start()
            result = await wrk(params.duration_s, accept_last if any_split else balanced)
            cpu = meter.stop()
            if result is None:
                split_retries += 1
                console.print(f"  {phase.name}: connections per worker {sorted(split.values())}")
                await asyncio.sleep(SETTLE_S)
            elif (
                noise_retries < NOISE_RETRIES
                and (noise := foreign_cores(cpu, result)) > QUIET_OTHER_CORES
            ):
                noise_retries += 1
                console.print(f"  {phase.name}: {noise:.2f} cores used by other processes")
                result = None
                # Waiting may outlast the cache TTL: warm up again.
                await warm_up()
        rounds_done = rounds[0] - rounds_before if rounds else None
        await asyncio.sleep(SETTLE_S)
        after = await scrape(client, metrics_url)
        # Our own two probe connections (before, after) are not the API's.
        sessions_opened = await postgres_sessions(bench.db_url) - sessions_before - 1
    cpu["wrk"] = result.wrk_cpu_s
    cache = {
        dict(labels)["result"]: value
        for labels, value in sample_delta(
            before, after, "tr_cache_requests_total", cache=CACHE_NAME
        ).items()
        if value
    }
    loads = sum(sample_delta(before, after, "tr_cache_loads_total", cache=CACHE_NAME).values())
    statuses = {
        dict(labels)["status"]: value
        for labels, value in sample_delta(
            before, after, "tr_http_requests_total", route=phase.route, method="GET"
        ).items()
        if value
    }
    return PhaseResult(
        phase=phase,
        wrk=result,
        cache=cache,
        loads=loads,
        http_status=statuses,
        server_mean_ms=server_mean_ms(before, after, phase.route),
        cpu_s=cpu,
        worker_cpu_s=sorted((meter.per_pid.get(pid, 0.0) for pid in workers), reverse=True),
        invalidation_rounds=rounds_done,
        pg_sessions_opened=max(sessions_opened, 0),
        connections_per_worker=sorted(split.values(), reverse=True),
        attempts=attempt,
    )


# --- checks and report ------------------------------------------------------------------------


def checks(results: dict[str, PhaseResult]) -> list[tuple[str, bool, str]]:
    """(what, passed, observed): the conditions under which the figures mean what they say."""
    out = []
    for r in results.values():
        server_errors = sum(v for k, v in r.http_status.items() if not k.startswith("2"))
        out.append(
            (
                f"{r.phase.name}: no errors (client and server)",
                r.wrk.error_count == 0 and server_errors == 0,
                f"wrk {r.wrk.error_count}, server non-2xx {server_errors:g}",
            )
        )
    warm, cold = results["warm"], results["cold"]
    warm_hits = warm.cache.get("hit", 0.0)
    out.append(
        (
            "warm: every lookup was a hit on a fresh entry (no DB load)",
            warm.lookups > 0 and warm_hits == warm.lookups and warm.loads == 0,
            f"{warm.lookups:g} lookups, {warm_hits:g} hits, {warm.loads:g} DB loads",
        )
    )
    # A lookup that found any entry (fresh, stale or negative) means an invalidation was missed.
    found_entry = cold.lookups - cold.cache.get("miss", 0.0) - cold.cache.get("coalesced", 0.0)
    out.append(
        (
            "cold: no lookup found a cached entry",
            cold.lookups > 0 and found_entry == 0,
            f"{cold.lookups:g} lookups, {found_entry:g} found an entry",
        )
    )
    # The only tolerated exception: a concert still in flight when its turn came again, which
    # single-flight rightly joins to the running load instead of loading it twice.
    load_share = cold.loads / cold.lookups if cold.lookups else 0.0
    out.append(
        (
            f"cold: >= {COLD_MIN_LOAD_SHARE:.1%} of lookups loaded from PostgreSQL themselves",
            load_share >= COLD_MIN_LOAD_SHARE,
            f"{cold.loads:g} DB loads for {cold.lookups:g} lookups "
            f"({cold.cache.get('coalesced', 0.0):g} joined an in-flight load)",
        )
    )
    return out


def params_table(params: Params, generator: str) -> Table:
    table = Table(title="catalog read benchmark: workload", title_justify="left")
    table.add_column("parameter")
    table.add_column("value")
    rows = [
        ("API workers", str(params.workers)),
        ("concurrency (keep-alive connections)", str(params.concurrency)),
        ("duration per phase", f"{params.duration_s} s after a {params.warmup_s} s warm-up"),
        ("concerts", str(params.concerts)),
        (
            "load generator",
            f"{escape(generator)}: {params.wrk_processes} processes started "
            f"{params.wrk_stagger_s:g} s apart, closed loop",
        ),
        ("cold: invalidation round every", f"{params.invalidate_every_ms:g} ms"),
        ("cores", f"{os.cpu_count()} shared by API, PostgreSQL, Redis and wrk (no pinning)"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def fmt_us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def results_table(results: dict[str, PhaseResult]) -> Table:
    noop = results["noop"].wrk.rps
    table = Table(title="results", title_justify="left")
    for column in ("phase", "req/s", "vs no-op", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for column in ("errors", "hit ratio", "DB loads/req", "API CPU us/req"):
        table.add_column(column, justify="right")
    for r in results.values():
        lat = r.wrk.latency_ms
        loads = f"{r.loads / r.lookups:.2f}" if r.lookups else "-"
        table.add_row(
            r.phase.name,
            f"{r.wrk.rps:,.0f}",
            fmt_ratio(r.wrk.rps / noop if noop else None),
            f"{lat['p50']:.2f}",
            f"{lat['p90']:.2f}",
            f"{lat['p99']:.2f}",
            f"{lat['max']:.1f}",
            str(r.wrk.error_count),
            fmt_ratio(r.hit_ratio),
            loads,
            fmt_us(r.api_us_per_request),
        )
    return table


CPU_GROUPS = (
    ("api", "API (uvicorn)"),
    ("postgres", "PostgreSQL"),
    ("redis_server", "redis-server"),
    ("wrk", "wrk"),
    ("bench_process", "bench script"),
    ("kernel_irq", "kernel irq/softirq"),
)


def other_cores(r: PhaseResult) -> float:
    """Machine CPU not used by any process the benchmark knows of."""
    return max(r.cores("machine_busy") - sum(r.cores(k) for k, _ in CPU_GROUPS), 0.0)


def well_spread(connections: list[int]) -> bool:
    """Every worker holds at least MIN_WORKER_SHARE of its fair share of the connections."""
    held = sum(connections)
    return held > 0 and min(connections) >= MIN_WORKER_SHARE * held / len(connections)


def foreign_cores(cpu: dict[str, float], result: WrkResult) -> float:
    """`other_cores` of a measured attempt before it becomes a PhaseResult."""
    known = sum(v for k, v in cpu.items() if not k.startswith("machine_")) + result.wrk_cpu_s
    return max(cpu["machine_busy"] - known, 0.0) / result.duration_s


def cpu_rows(r: PhaseResult) -> list[str]:
    busy, capacity = r.cores("machine_busy"), r.cores("machine_capacity")
    return [
        *(f"{r.cores(k):.2f}" for k, _ in CPU_GROUPS),
        f"{other_cores(r):.2f}",
        f"{busy:.2f} of {capacity:.2f}",
        " / ".join(f"{s / r.wrk.duration_s:.2f}" for s in r.worker_cpu_s),
        " / ".join(str(n) for n in r.connections_per_worker),
    ]


CPU_HEADERS = [
    *(label for _, label in CPU_GROUPS),
    "other",
    "machine busy",
    "per API worker",
    "connections per worker",
]


def warnings(results: dict[str, PhaseResult], workers: int) -> list[str]:
    """Conditions that make the figures less trustworthy without making them wrong."""
    out = []
    for r in results.values():
        if (other := other_cores(r)) > QUIET_OTHER_CORES:
            out.append(
                f"{r.phase.name}: {other:.2f} cores were used by processes outside the benchmark: "
                "the machine was not quiet, the figures understate the API"
            )
        if workers > 1 and not well_spread(r.connections_per_worker):
            out.append(
                f"{r.phase.name}: connections stayed unevenly spread over the API workers "
                f"({' / '.join(map(str, r.connections_per_worker))}) after {r.attempts} attempts"
            )
    return out


def cpu_table(results: dict[str, PhaseResult]) -> Table:
    table = Table(title="CPU during the measured window, in cores", title_justify="left")
    table.add_column("phase")
    for header in CPU_HEADERS:
        table.add_column(header, justify="right")
    for r in results.values():
        table.add_row(r.phase.name, *cpu_rows(r))
    return table


def render_markdown(report: dict[str, Any], results: dict[str, PhaseResult]) -> str:
    p, m, g = report["params"], report["machine"], report["generator"]
    ratios = report["ratios"]
    lines = [
        "# Catalog reads: warm cache, cold cache and the no-op ceiling",
        "",
        f"Generated by `python -m loadtests.bench_catalog` on {m['date']}.",
        "",
        "## Workload",
        "",
        "| parameter | value |",
        "|---|---|",
        f"| API | `python -m app.api`, uvicorn, **{p['workers']} worker(s)**, "
        "started by the benchmark |",
        f"| concurrency | {p['concurrency']} keep-alive connections, closed loop |",
        f"| duration | {p['duration_s']} s per phase, each after a {p['warmup_s']} s warm-up |",
        f"| catalog | {p['concerts']} concerts created through the API "
        "(throwaway database, private Redis prefix) |",
        f"| load generator | {g['tool']}: {g['processes']} processes of 1 thread, started "
        f"{g['stagger_s']:g} s apart (connections opened over time spread over the API "
        "workers; one burst tends to land on one worker), each cycling through its own share "
        "of the URLs with a Lua script; latency histograms merged |",
        f"| machine | {m['nproc']} cores ({m['cpu_model']}) shared by the API, PostgreSQL, "
        "Redis and wrk, no pinning |",
        f"| software | Python {m['python']}, {m['platform']} |",
        "",
        "Phases, in this order, against the same API processes:",
        "",
        "- **no-op ceiling**: `GET /healthz`, a constant JSON answer through the same "
        "middleware - the physical limit of this API on this machine.",
        "- **warm cache**: `GET /concerts/{id}` cycling through all concerts, all of them "
        "already in the Redis cache (cache-aside, `app/core/cache.py`).",
        "- **cold cache**: the same URLs while the benchmark bumps every concert's cache "
        f"generation every {p['invalidate_every_ms']:g} ms (the INCR of "
        "`ResponseCache.invalidate`), so each lookup finds a new generation and loads the "
        "concert from PostgreSQL. Each wrk process cycles through its own share of the "
        "concerts, so a concert comes back only after hundreds of other requests, many "
        "invalidation rounds later.",
        "",
        "## Results",
        "",
        "| phase | req/s | vs no-op | p50 ms | p90 ms | p99 ms | max ms | errors "
        "| server mean ms | hit ratio | DB loads/req | API CPU us/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    noop_rps = results["noop"].wrk.rps
    for r in results.values():
        lat = r.wrk.latency_ms
        server = f"{r.server_mean_ms:.2f}" if r.server_mean_ms is not None else "-"
        loads = f"{r.loads / r.lookups:.2f}" if r.lookups else "-"
        lines.append(
            f"| {r.phase.title} | {r.wrk.rps:,.0f} | {fmt_ratio(r.wrk.rps / noop_rps)} "
            f"| {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['max']:.1f} "
            f"| {r.wrk.error_count} | {server} | {fmt_ratio(r.hit_ratio)} | {loads} "
            f"| {fmt_us(r.api_us_per_request)} |"
        )
    goal = "met" if ratios["warm_over_noop"] >= GOAL_WARM_OVER_NOOP else "**not met**"
    lines += [
        "",
        "Latency is wrk's, per request from send to last byte (closed loop: with all "
        f"{p['concurrency']} connections busy it includes the wait in the server's queue); "
        "`server mean` is the API's own `tr_http_request_duration_seconds` over the same "
        "window (time inside the app, excluding the socket queue). `API CPU us/req` is the "
        "CPU time of the API's processes divided by the requests they answered in the window: "
        "unlike req/s it hardly depends on what else shares the cores.",
        "",
        "## Ratios",
        "",
        f"- warm / no-op throughput: **{ratios['warm_over_noop']:.1%}** "
        f"(goal >= {GOAL_WARM_OVER_NOOP:.0%}: {goal})",
        f"- cold / no-op throughput: **{ratios['cold_over_noop']:.1%}**",
        f"- warm / cold throughput: {ratios['warm_over_cold']:.1f}x",
        "- API CPU per request, no-op / warm: "
        f"**{fmt_ratio(ratios['api_cpu_noop_over_warm'])}**, no-op / cold: "
        f"{fmt_ratio(ratios['api_cpu_noop_over_cold'])} (what the throughput ratios would be "
        "if the API's own CPU were the only cost)",
        "",
        "## Cache counters per phase",
        "",
        'Deltas of the API\'s `tr_cache_requests_total{cache="concert_detail"}` and '
        '`tr_cache_loads_total{cache="concert_detail"}` over each measured window (all '
        "workers, Prometheus multiprocess mode). The server sees a few more requests than "
        "wrk counts: the ones in flight when wrk stopped. PostgreSQL connections opened: the "
        "growth of `pg_stat_database.sessions` of the bench database (approximate: backends "
        "report it lazily) - the API's pools opening new connections under load.",
        "",
        "| phase | lookups | hit | miss | other results | DB loads | hit ratio "
        "| invalidation rounds | a concert came back every | PostgreSQL connections opened (~) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        if r.phase.name == "noop":
            continue
        other = (
            ", ".join(f"{k} {v:g}" for k, v in r.cache.items() if k not in ("hit", "miss")) or "-"
        )
        rounds = str(r.invalidation_rounds) if r.invalidation_rounds is not None else "-"
        # Each wrk process cycles through its own share of the concerts.
        cycle = len(r.phase.paths) / r.wrk.rps if r.wrk.rps else 0.0
        lines.append(
            f"| {r.phase.name} | {r.lookups:g} | {r.cache.get('hit', 0):g} "
            f"| {r.cache.get('miss', 0):g} | {other} | {r.loads:g} | {fmt_ratio(r.hit_ratio)} "
            f"| {rounds} | {cycle * 1000:,.0f} ms | {r.pg_sessions_opened} |"
        )
    lines += [
        "",
        "## Where the CPU went (cores, measured window)",
        "",
        "From `/proc`: the API's processes, PostgreSQL (the postmaster and all its backends, "
        "including those opened and closed during the window), redis-server, wrk (its "
        "rusage), this script (the cold phase's invalidation rounds) and the kernel's "
        "interrupt handling (loopback TCP); `other` is everything else on the machine. "
        "`connections per worker` counts wrk's established connections held by each uvicorn "
        "worker half a second into the run: the workers share one listening socket and one of "
        "them can take a whole burst of new connections (64/0 happens), so a run in which a "
        f"worker holds less than {MIN_WORKER_SHARE:.0%} of its fair share is abandoned half a "
        f"second in and started again (up to {SPLIT_RETRIES} times), and a run during which "
        f"processes outside the benchmark used more than {QUIET_OTHER_CORES:g} cores is measured "
        f"again (up to {NOISE_RETRIES} times). Attempts used: "
        + ", ".join(f"{r.phase.name} {r.attempts}" for r in results.values())
        + ".",
        "",
        "| phase | " + " | ".join(CPU_HEADERS) + " |",
        "|---|" + "---:|" * len(CPU_HEADERS),
    ]
    for r in results.values():
        lines.append(f"| {r.phase.name} | " + " | ".join(cpu_rows(r)) + " |")
    lines += [
        "",
        f"Machine busy before the run (1 s idle sample): {report['background_cores']:.2f} cores.",
        "",
        "## Checks",
        "",
    ]
    for what, ok, observed in report["checks"]:
        lines.append(f"- {'PASS' if ok else 'FAIL'} - {what} ({observed})")
    if report["warnings"]:
        lines += ["", "## Warnings", ""]
        lines += [f"- {w}" for w in report["warnings"]]
    lines += ["", "![throughput and latency](catalog.png)", ""]
    return "\n".join(lines)


def plot(results: dict[str, PhaseResult], params: Params, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.phase.name for r in results.values()]
    rps = [r.wrk.rps for r in results.values()]
    p50 = [r.wrk.latency_ms["p50"] for r in results.values()]
    p99 = [r.wrk.latency_ms["p99"] for r in results.values()]
    colors = ["#7f7f7f", "#2ca02c", "#1f77b4"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    bars = left.bar(names, rps, color=colors)
    left.bar_label(bars, labels=[f"{v:,.0f}" for v in rps])
    left.set_ylabel("requests / s")
    left.set_title("throughput")
    width = 0.38
    xs = list(range(len(names)))
    b50 = right.bar([x - width / 2 for x in xs], p50, width, label="p50", color="#9ecae1")
    b99 = right.bar([x + width / 2 for x in xs], p99, width, label="p99", color="#08519c")
    right.bar_label(b50, labels=[f"{v:.1f}" for v in p50], fontsize=8)
    right.bar_label(b99, labels=[f"{v:.1f}" for v in p99], fontsize=8)
    right.set_xticks(xs, names)
    right.set_ylabel("latency, ms")
    right.set_title("latency (wrk, closed loop)")
    right.legend()
    fig.suptitle(
        f"GET /healthz vs GET /concerts/{{id}}: {params.workers} API workers, "
        f"{params.concurrency} connections, {params.duration_s} s per phase, "
        f"{os.cpu_count()} cores shared"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(
    out_dir: Path, report: dict[str, Any], results: dict[str, PhaseResult], params: Params
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    found = report["checks"]
    body = {**report, "checks": [{"what": w, "passed": ok, "observed": o} for w, ok, o in found]}
    (out_dir / "catalog.json").write_text(json.dumps(body, indent=2) + "\n")
    (out_dir / "catalog.md").write_text(render_markdown(report, results))
    plot(results, params, out_dir / "catalog.png")


# --- orchestration ----------------------------------------------------------------------------


def cpu_ratio(reference: PhaseResult, other: PhaseResult) -> float | None:
    ref, cost = reference.api_us_per_request, other.api_us_per_request
    return ref / cost if ref and cost else None


async def cleanup(bench: Bench) -> None:
    """Release everything the run created; one failed step does not skip the others."""

    async def stop_api() -> None:
        if bench.api_pid is not None:
            await asyncio.to_thread(stop_process, bench.api_pid, 15)
            bench.api_pid = None

    async def drop_keys() -> None:
        if bench.redis is not None:
            if bench.redis_prefix:
                pattern = f"{bench.redis_prefix}:*"
                keys = [k async for k in bench.redis.scan_iter(pattern, count=1000)]
                for start in range(0, len(keys), 1000):
                    await bench.redis.unlink(*keys[start : start + 1000])
            await bench.redis.aclose()
            bench.redis = None

    async def drop_db() -> None:
        if bench.db_url:
            await drop_database(bench.db_url)
            bench.db_url = ""

    async def remove_metrics_dir() -> None:
        if bench.metrics_dir is not None:
            await asyncio.to_thread(shutil.rmtree, bench.metrics_dir)
            bench.metrics_dir = None

    for step in (stop_api, drop_keys, drop_db, remove_metrics_dir):
        try:
            await step()
        except Exception as exc:  # report and go on: the other resources still need releasing
            console.print(f"[red]cleanup: {step.__name__} failed: {exc}[/red]")


async def sample_background() -> float:
    busy = machine_busy_s()[0]
    await asyncio.sleep(1.0)
    return machine_busy_s()[0] - busy


async def wait_quiet(max_wait_s: float, quiet_samples: int = 2) -> float:
    """Wait (up to `max_wait_s`) until the machine is idle apart from us; the last load seen.

    The figures are only worth something when nothing else competes for the cores: the API is
    idle between phases, so what one-second samples see busy belongs to someone else. Quiet
    means `quiet_samples` samples in a row, so a lull between someone's steps does not count.
    """
    deadline = time.monotonic() + max_wait_s
    waited = False
    streak = 0
    while True:
        busy = await sample_background()
        streak = streak + 1 if busy <= QUIET_OTHER_CORES else 0
        if streak >= quiet_samples or time.monotonic() >= deadline:
            if waited:
                console.print(f"  machine load now {busy:.2f} cores")
            return busy
        if not waited and streak == 0:
            console.print(
                f"  waiting up to {max_wait_s:g} s for a quiet machine "
                f"({busy:.2f} cores busy outside the benchmark)"
            )
            waited = True


async def run(params: Params, out_dir: Path) -> int:
    generator = wrk_version(require_wrk())
    console.print(params_table(params, generator))
    bench = Bench(params=params)
    settings = get_settings()
    # A kill (CI timeout, `kill PID`) must still stop the API and drop the database: SIGTERM and
    # SIGHUP cancel this task, which runs the `finally` below (asyncio.run does it for SIGINT).
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, task.cancel)
    try:
        bench.stack_env = ensure_stack_env()
        tag = secrets.token_hex(4)
        bench.redis_prefix = f"trbench-{tag}"
        bench.redis = Redis.from_url(bench.stack_env["TR_REDIS_URL"])
        bench.metrics_dir = Path(tempfile.mkdtemp(prefix="tr-bench-metrics-"))
        logs = settings.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        bench.api_log = logs / "bench-catalog-api.log"
        setup_log = logs / "bench-catalog-setup.log"

        console.print("setup: throwaway database, migrations, admin account")
        bench.db_url = await create_database(
            bench.stack_env["TR_DATABASE_URL"], f"tr_bench_catalog_{tag}"
        )
        port = free_port()
        env = api_env(bench, port)
        password = secrets.token_urlsafe(18)
        await asyncio.to_thread(run_cli, ["migrate"], env, setup_log)
        await asyncio.to_thread(
            run_cli,
            ["create-admin", ADMIN_EMAIL],
            {**env, "TR_ADMIN_PASSWORD": password},
            setup_log,
        )
        console.print(f"setup: starting the API ({params.workers} workers) on port {port}")
        await start_api(bench, env, port)
        started = time.monotonic()
        bench.concert_ids = await create_catalog(bench, password)
        console.print(
            f"setup: {len(bench.concert_ids)} concerts created through the API "
            f"in {time.monotonic() - started:.1f} s"
        )
        await check_generation_key(bench.redis, bench.redis_prefix, bench.concert_ids[0])
        background = await wait_quiet(params.quiet_wait_s)

        detail_paths = [f"/concerts/{i}" for i in bench.concert_ids]
        phases = [
            Phase("noop", "no-op ceiling (GET /healthz)", "/healthz", ["/healthz"]),
            Phase("warm", "warm cache (GET /concerts/{id})", DETAIL_ROUTE, detail_paths),
            Phase("cold", "cold cache (GET /concerts/{id})", DETAIL_ROUTE, detail_paths),
        ]
        results: dict[str, PhaseResult] = {}
        async with httpx.AsyncClient(timeout=10) as client:
            for phase in phases:
                results[phase.name] = await run_phase(
                    bench, client, phase, cold=phase.name == "cold"
                )
    finally:
        console.print("cleanup: stopping the API, dropping the database and Redis keys")
        await cleanup(bench)

    noop, warm, cold = (results[n].wrk.rps for n in ("noop", "warm", "cold"))
    found = checks(results)
    report: dict[str, Any] = {
        "benchmark": "catalog",
        "params": params.as_dict(),
        "generator": {
            "tool": generator,
            "processes": params.wrk_processes,
            "stagger_s": params.wrk_stagger_s,
            "connections": params.concurrency,
            "mode": "closed loop, keep-alive",
            "same_cores_as_server": True,
        },
        "machine": machine_info(),
        "background_cores": round(background, 3),
        "phases": {name: r.as_dict() for name, r in results.items()},
        "ratios": {
            "warm_over_noop": warm / noop if noop else 0.0,
            "cold_over_noop": cold / noop if noop else 0.0,
            "warm_over_cold": warm / cold if cold else 0.0,
            "api_cpu_noop_over_warm": cpu_ratio(results["noop"], results["warm"]),
            "api_cpu_noop_over_cold": cpu_ratio(results["noop"], results["cold"]),
        },
        "goal": {"warm_over_noop_min": GOAL_WARM_OVER_NOOP},
        "checks": found,
        "warnings": warnings(results, params.workers),
    }
    write_reports(out_dir, report, results, params)

    console.print(results_table(results))
    console.print(cpu_table(results))
    ratios = report["ratios"]
    console.print(
        f"warm / no-op throughput {ratios['warm_over_noop']:.1%} "
        f"(goal >= {GOAL_WARM_OVER_NOOP:.0%}), cold / no-op {ratios['cold_over_noop']:.1%}"
    )
    for what, ok, observed in found:
        mark = "[green]PASS[/green]" if ok else "[red]FAIL[/red]"
        console.print(f"{mark} {what} ({observed})")
    for warning in report["warnings"]:
        console.print(f"[yellow]WARNING[/yellow] {warning}")
    console.print(f"wrote {out_dir}/catalog.md, catalog.json, catalog.png")
    return 0 if all(ok for _, ok, _ in found) else 1


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def parse_args(argv: list[str] | None = None) -> tuple[Params, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "catalog")
    parser.add_argument("--workers", type=positive, default=2, help="API worker processes")
    parser.add_argument("--concurrency", type=positive, default=64, help="open connections")
    parser.add_argument("--duration", type=positive, default=10, help="seconds per phase")
    parser.add_argument(
        "--warmup", type=positive, default=3, help="warm-up seconds before each phase (>= 1)"
    )
    parser.add_argument("--concerts", type=positive, default=1000, help="concerts to create")
    parser.add_argument("--wrk-processes", type=positive, default=4)
    parser.add_argument(
        "--wrk-stagger", type=float, default=0.15, help="seconds between wrk process starts"
    )
    parser.add_argument(
        "--invalidate-ms", type=float, default=20.0, help="cold phase: invalidation round period"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait, before each phase, for other processes to leave the CPUs idle",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    # Cached entries stay fresh for at least this long; the warm phase must fit in it.
    fresh_s = settings.cache_ttl_s * (1 - settings.cache_ttl_jitter)
    if args.warmup + args.duration + TTL_MARGIN_S > fresh_s:
        parser.error(
            f"--warmup + --duration must stay below {fresh_s - TTL_MARGIN_S:g} s: cached "
            f"entries may go stale after {fresh_s:g} s (TR_CACHE_TTL_S, TR_CACHE_TTL_JITTER)"
        )
    if args.concerts < 2 * args.concurrency:
        parser.error("--concerts must be at least twice --concurrency (no concert in flight twice)")
    params = Params(
        workers=args.workers,
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
        concerts=args.concerts,
        wrk_processes=args.wrk_processes,
        wrk_stagger_s=args.wrk_stagger,
        invalidate_every_ms=args.invalidate_ms,
        quiet_wait_s=args.quiet_wait,
    )
    return params, args.out


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    try:
        yield
    except (LoadGenError, StackError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise SystemExit(2) from None
    except asyncio.CancelledError:
        console.print("[red]interrupted: cleaned up, no report written[/red]")
        raise SystemExit(143) from None


def main(argv: list[str] | None = None) -> None:
    params, out_dir = parse_args(argv)
    with _reported():
        code = asyncio.run(run(params, out_dir))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
