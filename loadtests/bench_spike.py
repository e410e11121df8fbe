"""`make bench-spike`: the waiting room and the booking pipeline under a spike, with references.

    python -m loadtests.bench_spike --out reports/spike [--seconds 10] [--skip-rush]

Against the running local stack (`make bench-spike` starts it with the demo's settings), in one
run:
1. HTTP, closed loop (wrk, the same connections for every phase): the app's no-op ceiling
   (`GET /healthz`), joins (`POST /sales/{id}/queue`, a different fan per request), status
   checks (`GET /sales/{id}/queue/me`). The sale's admission rate is 0 meanwhile, so the queue
   only grows.
2. Status latency at the default load, open loop: `--status-rate` checks per second (the demo's
   polling rate: ~45,000 waiting fans polling about every 30 s), p50/p99 timed from when each
   check was due, against `/healthz` at the same rate from the same client.
3. The booking consumer: a backlog of `--messages` claimed booking requests on a private broker
   drained by 2 consumer processes (bookings/s), against `pgbench` single-row INSERTs into a
   table shaped like the inbox (the physical reference).
4. Time to sell out: the default demo rush (50,000 fans, 5,000 seats), unless --skip-rush.
A py-spy profile of one API worker during the join phase names where the time goes.
Writes reports/spike/REPORT.md, results.json and spike.png.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.booking.inventory import Inventory
from app.booking.messages import REQUESTS_TOPIC, BookingRequestMessage
from app.booking.strategies.base import HoldRequest
from app.booking.strategies.redis_claim import request_id_for
from app.core.config import PROJECT_ROOT, Settings
from app.core.redis import Keys, create_redis
from app.devstack.broker import (
    ensure_topics,
    free_port,
    spawn,
    start_broker,
    stop_process,
    wait_broker_ready,
)
from loadtests.bench_booking import pg_bin
from loadtests.demo import _settings_of_stack
from loadtests.loadgen import WrkResult, http_get, machine_info, open_loop, run_wrk
from loadtests.rush import RushConfig, create_accounts, failed_invariants, run_rush

console = Console()


# --- 1. HTTP phases ---------------------------------------------------------------------------


async def http_phases(
    base_url: str, settings: Settings, engine: AsyncEngine, *, seconds: int, connections: int
) -> dict[str, Any]:
    [(_, admin_token)] = await create_accounts(engine, settings, 1, "admin")
    admin = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=admin, timeout=30) as c:
        concert = await _concert(c)
        now = datetime.now(UTC)
        r = await c.post(
            "/sales",
            json={
                "concert_id": concert,
                "opens_at": (now + timedelta(seconds=2)).isoformat(),
                "closes_at": (now + timedelta(hours=1)).isoformat(),
            },
        )
        r.raise_for_status()
        sale_id = r.json()["id"]
        # Nobody is admitted while we measure: the queue only grows.
        (
            await c.put(f"/sales/{sale_id}/rate", json={"rate": 0, "mode": "manual"})
        ).raise_for_status()
        await asyncio.sleep(3)  # open
    # Enough fans that (nearly) every join of the measured window is a new place.
    fans = await create_accounts(engine, settings, 150_000, "fan")
    joins = [f"POST /sales/{sale_id}/queue {token}" for _, token in fans]
    results: dict[str, Any] = {}
    profile_task: asyncio.Task[dict[str, Any]] | None = None
    for name, paths in (
        ("noop", ["/healthz"]),
        ("join", joins),
        ("status", [f"GET /sales/{sale_id}/queue/me {token}" for _, token in fans]),
    ):
        await run_wrk(base_url, paths[:2000], duration_s=2, connections=connections, processes=2)
        if name == "join":
            paths = paths[2000:]  # the warm-up's joins are not counted as new
            profile_task = asyncio.create_task(profile_api(seconds))
        console.print(f"phase {name}: {seconds} s, {connections} connections")
        result = await run_wrk(
            base_url, paths, duration_s=seconds, connections=connections, processes=2
        )
        assert result is not None
        results[name] = _wrk_dict(result)
    results["profile"] = await profile_task if profile_task else {}
    async with httpx.AsyncClient(base_url=base_url, headers=admin, timeout=30) as c:
        stats = (await c.get(f"/sales/{sale_id}/stats")).json()
        await c.post(f"/sales/{sale_id}:close")
    results["queue_after"] = {"joined": stats["joined"], "queue_length": stats["queue_length"]}
    results["sale_id"] = sale_id
    results["fans"] = fans[:40_000]
    return results


async def _concert(c: httpx.AsyncClient) -> int:
    tag = uuid.uuid4().hex[:6]
    agency = (await c.post("/agencies", json={"name": f"Spike {tag}"})).json()
    artist = (
        await c.post("/artists", json={"agency_id": agency["id"], "name": f"Spike {tag}"})
    ).json()
    venue = (
        await c.post("/venues", json={"name": f"Hall {tag}", "city": "Seoul", "country": "KR"})
    ).json()
    concert = (
        await c.post(
            "/concerts",
            json={
                "title": f"Spike {tag}",
                "artist_id": artist["id"],
                "venue_id": venue["id"],
                "starts_at": (datetime.now(UTC) + timedelta(days=9)).isoformat(),
            },
        )
    ).json()
    r = await c.post(
        f"/concerts/{concert['id']}/seats:generate",
        json={"sections": [{"name": "Floor", "rows": 10, "seats_per_row": 50, "price": 99_000}]},
    )
    r.raise_for_status()
    return int(concert["id"])


def _wrk_dict(r: WrkResult) -> dict[str, Any]:
    return {
        "rps": r.rps,
        "requests": r.requests,
        "errors": r.errors,
        "latency_ms": r.latency_ms,
        "wrk_cpu_s": r.wrk_cpu_s,
    }


async def profile_api(seconds: int) -> dict[str, Any]:
    """py-spy on one API worker: the functions where it spends its own time (top 12)."""
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if spy is None:
        return {"available": False, "reason": "py-spy not installed"}
    pgrep = await asyncio.create_subprocess_exec(
        "pgrep", "-f", "multiprocessing.spawn", stdout=asyncio.subprocess.PIPE
    )
    pids = [int(p) for p in (await pgrep.communicate())[0].split()]
    if not pids:
        return {"available": False, "reason": "no uvicorn worker found"}
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        proc = await asyncio.create_subprocess_exec(
            spy,
            "record",
            "-p",
            str(pids[0]),
            "-d",
            str(max(1, seconds - 2)),
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            f.name,
            "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
        raw = await asyncio.to_thread(Path(f.name).read_text)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        # Idle: the event loop waiting in epoll, or the worker's parent-pipe thread.
        if "select (selectors.py" in frames[-1] or "_recv (multiprocessing" in frames[-1]:
            continue
        n = int(count)
        total += n
        own[_frame(frames[-1])] += n
        for frame in {_frame(f) for f in frames}:
            inclusive[frame] += n
    return {
        "available": True,
        "samples": total,
        "own": [(f, n / total) for f, n in own.most_common(12)] if total else [],
        "inclusive": [
            (f, n / total)
            for f, n in inclusive.most_common(40)
            if any(k in f for k in ("app/", "redis/", "jwt", "fastapi/", "starlette/", "pydantic"))
        ][:15]
        if total
        else [],
    }


def _frame(frame: str) -> str:
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    name, where = m.groups()
    where = where.split("site-packages/")[-1].replace(str(PROJECT_ROOT) + "/", "")
    return f"{name} ({where})"


# --- 2. status latency at the default load ------------------------------------------------------


async def status_open_loop(
    base_url: str, sale_id: int, fans: list[tuple[int, str]], *, rate: float, seconds: float
) -> dict[str, Any]:
    """Status checks of fans in line at a fixed rate, and `/healthz` at the same rate as the
    reference: the same client, machine and rate with no waiting-room work behind it."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    checks = [
        http_get(url.netloc, f"/sales/{sale_id}/queue/me", {"Authorization": f"Bearer {token}"})
        for _, token in fans
    ]
    noop = await open_loop(
        host, port, [http_get(url.netloc, "/healthz")], rate=rate, seconds=seconds
    )
    status = await open_loop(host, port, checks, rate=rate, seconds=seconds)
    return {
        "rate": rate,
        "achieved_rate": status.achieved_rate,
        "requests": status.requests,
        "statuses": status.statuses,
        "p50": status.latency_ms.get("p50", 0.0),
        "p99": status.latency_ms.get("p99", 0.0),
        "latency_ms": status.latency_ms,
        "connections": status.connections,
        "client_cpu_cores": status.client_cpu_cores,
        "noop": dataclasses.asdict(noop),
    }


# --- 3. consumer throughput vs pgbench --------------------------------------------------------


async def consumer_throughput(
    settings: Settings, engine: AsyncEngine, work: Path, *, messages: int, consumers: int
) -> dict[str, Any]:
    """A backlog on a private broker (so the stack's consumers do not take it), drained by
    `consumers` fresh consumer processes; every message is one claimed GA ticket."""
    port = free_port()
    broker = start_broker(port, work / "tansu.log")
    bootstrap = f"127.0.0.1:{port}"
    procs = []
    redis = create_redis(settings)
    try:
        await wait_broker_ready(bootstrap)
        await ensure_topics(bootstrap, settings.kafka_topics)
        concerts = await _ga_concerts(engine, n=8, stock=messages)
        users = [u for u, _ in await create_accounts(engine, settings, messages, "fan")]
        keys = Keys(settings.redis_prefix)
        inventory = Inventory(redis, keys)
        payloads: list[tuple[bytes, bytes]] = []
        for concert in concerts:
            await inventory.ensure_loaded(engine, concert, timeout_s=10)
        for i, user in enumerate(users):
            concert = concerts[i % len(concerts)]
            req = HoldRequest(
                user_id=user,
                concert_id=concert,
                seat_ids=(),
                quantity=1,
                max_per_user=4,
                idempotency_key=None,
                request_hash=None,
            )
            rid = request_id_for(req)
            claim = await inventory.claim(concert, rid, (), 1)
            msg = BookingRequestMessage.of(
                req,
                request_id=rid,
                hold_ttl_s=300,
                inventory_version=claim.version,
                created_at=datetime.now(UTC),
            )
            payloads.append((msg.key(), msg.model_dump_json().encode()))
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(REQUESTS_TOPIC, v, key=k) for k, v in payloads]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        env = {
            **os.environ,
            "TR_KAFKA_BOOTSTRAP": bootstrap,
            "TR_DATABASE_URL": settings.database_url,
            "TR_REDIS_URL": settings.redis_url,
            "TR_JWT_SECRET": settings.jwt_secret.get_secret_value(),
            "TR_BOOKING_CONSUMER_METRICS_PORT": "0",
            "TR_BOOKING_CONSUMER_GROUP": f"bench-{secrets.token_hex(3)}",
        }
        started = time.monotonic()
        for i in range(consumers):
            procs.append(
                spawn(
                    [sys.executable, "-m", "app.booking_consumer"],
                    work / f"consumer-{i}.log",
                    env=env,
                    cwd=PROJECT_ROOT,
                )
            )
        first: float | None = None
        deadline = started + 180
        done = 0
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                done = int(
                    await conn.scalar(
                        text("SELECT count(*) FROM booking_inbox WHERE concert_id = ANY(:c)"),
                        {"c": concerts},
                    )
                    or 0
                )
            if done and first is None:
                first = time.monotonic()
            if done >= messages:
                break
            await asyncio.sleep(0.05)
        ended = time.monotonic()
        assert first is not None and done >= messages, f"only {done} of {messages} processed"
        return {
            "messages": messages,
            "consumers": consumers,
            "drain_s": ended - first,
            "bookings_per_s": messages / (ended - first),
            "startup_s": first - started,
        }
    finally:
        for p in procs:
            stop_process(p.pid)
        stop_process(broker.pid)
        await redis.aclose()


async def _ga_concerts(engine: AsyncEngine, *, n: int, stock: int) -> list[int]:
    async with engine.begin() as conn:
        artist = await conn.scalar(text("SELECT id FROM artist ORDER BY id LIMIT 1"))
        venue = await conn.scalar(text("SELECT id FROM venue ORDER BY id LIMIT 1"))
        ids = []
        for i in range(n):
            cid = await conn.scalar(
                text(
                    "INSERT INTO concert (title, artist_id, venue_id, starts_at, status,"
                    " max_tickets_per_user) VALUES (:t, :a, :v, now() + interval '30 days',"
                    " 'on_sale', 4) RETURNING id"
                ),
                {"t": f"Consumer bench {uuid.uuid4().hex[:6]} #{i}", "a": artist, "v": venue},
            )
            await conn.execute(
                text(
                    "INSERT INTO ga_inventory (concert_id, total, stock, price_minor, currency)"
                    " VALUES (:c, :s, :s, 50000, 'KRW')"
                ),
                {"c": cid, "s": stock},
            )
            ids.append(int(cid))
    return ids


PGBENCH_INSERT = (
    "\\set uid random(1, 1000000)\n"
    "INSERT INTO bench_inbox (request_id, user_id, concert_id, outcome, result)"
    " VALUES (gen_random_uuid(), :uid, 1, 'held', '{}');\n"
)


async def pgbench_insert(settings: Settings, work: Path, *, seconds: int) -> dict[str, Any]:
    exe = pg_bin("pgbench")
    if exe is None:
        return {"available": False, "reason": "pgbench not found"}
    url = make_url(settings.database_url)
    name = f"tr_bench_insert_{secrets.token_hex(4)}"
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    scratch = create_async_engine(url.set(database=name))
    async with scratch.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE bench_inbox (request_id uuid PRIMARY KEY, user_id bigint NOT NULL,"
                " concert_id bigint NOT NULL, outcome varchar(16) NOT NULL, result jsonb NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())"
            )
        )
    await scratch.dispose()
    script = work / "insert.sql"
    script.write_text(PGBENCH_INSERT)
    try:
        proc = await asyncio.create_subprocess_exec(
            exe,
            "-n",
            "-M",
            "prepared",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            str(script),
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            name,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out = (await proc.communicate())[0].decode()
        tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
        return {
            "available": bool(tps),
            "tps": float(tps.group(1)) if tps else 0.0,
            "clients": 8,
            "seconds": seconds,
            "script": "single-row INSERT into an inbox-shaped table (uuid PK, jsonb)",
        }
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


# --- report ------------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    h = report["http"]
    noop, join, status = h["noop"]["rps"], h["join"]["rps"], h["status"]["rps"]
    ol = report["status_open_loop"]
    cons, pg = report["consumer"], report["pgbench"]
    rush = report.get("rush")
    lines = [
        "# Spike benchmark: waiting room and booking pipeline",
        "",
        f"Run at {report['at']} on {report['machine'].get('cpu_model', '?')} "
        f"({report['machine'].get('nproc', '?')} cores); local stack, API with 2 uvicorn "
        "workers (the rush's admitted fans shop on the stack's checkout API).",
        "",
        "## Parameters",
        "",
        f"- HTTP phases: wrk, {report['connections']} connections, {report['seconds']} s each "
        "after a 2 s warm-up; join = a new fan per request (150,000 tokens), status = fans "
        "already in line; admission rate 0 during the phases.",
        f"- Status at the default load: open loop, {ol['rate']:.0f} checks/s for "
        f"{report['open_loop_s']} s, each timed from when it was due (keep-alive connections, "
        f"one more whenever all are busy: {ol['connections']} opened; the client used "
        f"{ol['client_cpu_cores']:.2f} cores); reference: `/healthz` the same way.",
        f"- Consumer: {cons['messages']:,} claimed GA requests over 8 concerts on a private "
        f"broker, {cons['consumers']} consumer processes; reference pgbench "
        f"(-c {pg.get('clients')}) {pg.get('script')}.",
        "",
        "## Results",
        "",
        "| measurement | value | reference | ratio | goal |",
        "|---|---:|---:|---:|---|",
        f"| join throughput | {join:,.0f} req/s | no-op {noop:,.0f} req/s | {join / noop:.0%} | "
        f"≥ 70 % {'met' if join / noop >= 0.7 else '**not met**'} |",
        f"| status throughput | {status:,.0f} req/s | no-op {noop:,.0f} req/s | "
        f"{status / noop:.0%} | - |",
        f"| status p50 / p99 (closed loop) | {h['status']['latency_ms'].get('p50', 0):.1f} / "
        f"{h['status']['latency_ms'].get('p99', 0):.1f} ms | no-op "
        f"{h['noop']['latency_ms'].get('p50', 0):.1f} / "
        f"{h['noop']['latency_ms'].get('p99', 0):.1f} ms | - | - |",
        f"| status p50 / p99 at {ol['rate']:.0f}/s (open loop) | {ol['p50']:.1f} / "
        f"{ol['p99']:.1f} ms | no-op {ol['noop']['latency_ms'].get('p50', 0):.1f} / "
        f"{ol['noop']['latency_ms'].get('p99', 0):.1f} ms | - | p99 < 100 ms "
        f"{'met' if ol['p99'] < 100 else '**not met**'} |",
        f"| consumer throughput | {cons['bookings_per_s']:,.0f} bookings/s | pgbench INSERT "
        f"{pg.get('tps', 0):,.0f} tps | {cons['bookings_per_s'] / max(1, pg.get('tps', 1)):.0%} "
        "| - |",
    ]
    if rush:
        lines.append(
            f"| time to sell out (default demo) | {rush['sold_out_after_s']} s | - | - | "
            f"invariants: {'all hold' if not rush['failures'] else '; '.join(rush['failures'])} |"
        )
    lines += [
        "",
        f"HTTP errors: no-op {h['noop']['errors']}, join {h['join']['errors']}, "
        f"status {h['status']['errors']}; open-loop statuses {ol['statuses']}; queue after the "
        f"join phase: {h['queue_after']}.",
        "",
        "![throughput](spike.png)",
        "",
        "## Where the time goes (py-spy, one API worker, join phase)",
        "",
    ]
    prof = h.get("profile") or {}
    if prof.get("available"):
        lines += ["| own time | function |", "|---:|---|"]
        lines += [f"| {share:.1%} | `{f}` |" for f, share in prof["own"]]
        lines += ["", "| inclusive | function |", "|---:|---|"]
        lines += [f"| {share:.1%} | `{f}` |" for f, share in prof["inclusive"]]
    else:
        lines.append(f"not profiled: {prof.get('reason')}")
    lines += ["", "## Reading", "", *report.get("reading", []), ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = report["http"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = ["no-op", "join", "status"]
    a.bar(
        names,
        [h["noop"]["rps"], h["join"]["rps"], h["status"]["rps"]],
        color=["grey", "tab:blue", "tab:orange"],
    )
    a.set_ylabel("requests / s")
    a.set_title("HTTP throughput (wrk, same connections)")
    cons, pg = report["consumer"], report["pgbench"]
    b.bar(
        ["consumer\nbookings/s", "pgbench\nINSERT tps"],
        [cons["bookings_per_s"], pg.get("tps", 0)],
        color=["tab:green", "grey"],
    )
    b.set_title("Booking consumer vs PostgreSQL")
    fig.tight_layout()
    fig.savefig(out / "spike.png", dpi=110)
    plt.close(fig)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    settings, base_url, checkout_url = _settings_of_stack()
    engine = create_async_engine(settings.database_url, pool_size=4)
    report: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "seconds": args.seconds,
        "connections": args.connections,
        "open_loop_s": args.open_loop_seconds,
    }
    try:
        http = await http_phases(
            base_url, settings, engine, seconds=args.seconds, connections=args.connections
        )
        fans = http.pop("fans")
        report["http"] = http
        console.print(f"open loop: {args.status_rate}/s status checks")
        report["status_open_loop"] = await status_open_loop(
            base_url,
            http["sale_id"],
            fans,
            rate=args.status_rate,
            seconds=args.open_loop_seconds,
        )
        with tempfile.TemporaryDirectory(prefix="tr-spike-") as tmp:
            console.print(f"consumer: {args.messages:,} messages, 2 consumers")
            report["consumer"] = await consumer_throughput(
                settings, engine, Path(tmp), messages=args.messages, consumers=2
            )
            console.print("reference: pgbench single-row INSERT")
            report["pgbench"] = await pgbench_insert(settings, Path(tmp), seconds=10)
    finally:
        await engine.dispose()
    if not args.skip_rush:
        console.print("time to sell out: the default demo rush")
        outcome = await run_rush(
            base_url=base_url, settings=settings, cfg=RushConfig(), checkout_url=checkout_url
        )
        report["rush"] = {
            "sold_out_after_s": None
            if outcome.sold_out_after_s is None
            else round(outcome.sold_out_after_s, 1),
            "finished_after_s": round(outcome.finished_after_s, 1),
            "failures": failed_invariants(outcome.checks),
            "checks": {k: v for k, v in outcome.checks.items() if k != "answers"},
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports/spike"))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--status-rate", type=float, default=1500.0)
    parser.add_argument("--open-loop-seconds", type=int, default=15)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--skip-rush", action="store_true")
    parser.add_argument(
        "--reading",
        type=Path,
        default=Path("reports/spike/reading.md"),
        help="a Markdown file with the reading of the figures (kept beside the report)",
    )
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    if args.reading and args.reading.exists():
        report["reading"] = args.reading.read_text().splitlines()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2, default=str))
    plot(report, args.out)
    (args.out / "REPORT.md").write_text(render(report), encoding="utf-8")
    h = report["http"]
    table = Table(title="Spike benchmark")
    for col in ("measurement", "value"):
        table.add_column(col)
    table.add_row("no-op ceiling", f"{h['noop']['rps']:,.0f} req/s")
    table.add_row(
        "join", f"{h['join']['rps']:,.0f} req/s ({h['join']['rps'] / h['noop']['rps']:.0%})"
    )
    table.add_row("status", f"{h['status']['rps']:,.0f} req/s")
    ol = report["status_open_loop"]
    table.add_row(f"status @ {ol['rate']:.0f}/s p50/p99", f"{ol['p50']:.1f} / {ol['p99']:.1f} ms")
    table.add_row("consumer", f"{report['consumer']['bookings_per_s']:,.0f} bookings/s")
    table.add_row("pgbench INSERT", f"{report['pgbench'].get('tps', 0):,.0f} tps")
    if "rush" in report:
        table.add_row("time to sell out", f"{report['rush']['sold_out_after_s']} s")
    console.print(table)
    console.print(f"wrote {args.out / 'REPORT.md'}")
    if report.get("rush", {}).get("failures"):
        sys.exit(1)


if __name__ == "__main__":
    main()
