"""`make bench-queue-redis`: what one waiting-room call costs Redis, against SET on the same server.

    python -m loadtests.bench_queue_redis --out reports/capacity [--fans 100000]

A private `redis-server` (no persistence, a free port) holds one open sale. `--fans` fans join
through the app's own Lua script (`QueueStore.join`, rate limits included), then each checks
its status once (`QueueStore.status_one`). For each phase the benchmark reads Redis's own
accounting: the main thread's CPU seconds (`INFO cpu`, which includes reading requests and
writing replies) and the scripts' time (`INFO commandstats`). The reference in the same run is
`redis-benchmark` SET (same server, 50 clients, no pipelining). Redis runs a sale's calls on
one thread (a sale's keys share one cluster slot), so CPU per call is that sale's ceiling:
the figures docs/capacity.md sizes shards with. Memory per waiting fan comes from `INFO memory`.
Writes REPORT.md, results.json and queue_redis.png under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from app.core.redis import Keys
from app.devstack.broker import free_port
from app.queue.store import Limits, QueueStore, SaleSnapshot

console = Console()
CONCURRENCY = 64
SALE_ID = 1


async def _info(redis: Redis) -> dict[str, float]:
    cpu = await redis.info("cpu")
    mem = await redis.info("memory")
    stats = await redis.info("commandstats")
    evalsha = stats.get("cmdstat_evalsha", {})
    return {
        "cpu_s": float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"]),
        "script_us": float(evalsha.get("usec", 0)),
        "script_calls": float(evalsha.get("calls", 0)),
        "memory": float(mem["used_memory"]),
    }


async def _phase(redis: Redis, name: str, calls: int, one: Any) -> dict[str, float | str]:
    before = await _info(redis)
    started = time.perf_counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for user_id in range(1, calls + 1):
        queue.put_nowait(user_id)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    wall = time.perf_counter() - started
    after = await _info(redis)
    cpu_us = (after["cpu_s"] - before["cpu_s"]) * 1e6 / calls
    return {
        "phase": name,
        "calls": calls,
        "wall_s": wall,
        "client_rate": calls / wall,
        "redis_cpu_us": cpu_us,
        "script_us": (after["script_us"] - before["script_us"])
        / max(1.0, after["script_calls"] - before["script_calls"]),
        "ceiling_per_s": 1e6 / cpu_us if cpu_us > 0 else 0.0,
        "memory_delta": after["memory"] - before["memory"],
    }


def _redis_benchmark(port: int, requests: int) -> dict[str, float]:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return {"rps": 0.0}
    out = subprocess.run(
        [exe, "-p", str(port), "-t", "set", "-n", str(requests), "-c", "50", "-q", "--csv"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r'"SET","([\d.]+)"', out)
    return {"rps": float(match.group(1)) if match else 0.0}


async def run(fans: int) -> dict[str, Any]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not found")
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        proc = await asyncio.create_subprocess_exec(
            *(exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"),
            *("no", "--dir", work),
            stdout=subprocess.DEVNULL,
        )
        redis = Redis(host="127.0.0.1", port=port, max_connections=CONCURRENCY + 8)
        try:
            for _ in range(100):
                try:
                    await redis.ping()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            store = QueueStore(redis, Keys("bench"))
            now_ms = int(time.time() * 1000)
            await store.sync(
                SALE_ID,
                SaleSnapshot(
                    status="open",
                    reason="",
                    concert_id=1,
                    opens_ms=now_ms - 1000,
                    closes_ms=now_ms + 3_600_000,
                    max_active=1000,
                    min_rate=1.0,
                    max_rate=100.0,
                    initial_rate=0.0,
                ),
                retention_ms=3_600_000,
            )
            await store.set_rate(SALE_ID, 0.0, "manual")  # nobody is admitted: the line grows

            def limits(action: str, user_id: int) -> Limits:
                return Limits(action, user_id, f"10.0.{user_id % 250}.1", 10**6, 10**9, 60_000)

            async def join(user_id: int) -> None:
                result = await store.join(
                    SALE_ID,
                    user_id,
                    grace_ms=600_000,
                    draw_key=0.5,
                    window_ms=600_000,
                    limits=limits("join", user_id),
                )
                assert result.kind == "new", result.kind

            async def status(user_id: int) -> None:
                _, fan = await store.status_one(
                    SALE_ID, user_id, grace_ms=600_000, limits=limits("status", user_id)
                )
                assert fan is not None and fan.state == "waiting", fan

            console.print(f"{fans:,} joins, then {fans:,} status checks, {CONCURRENCY} clients")
            phases = [
                await _phase(redis, "join", fans, join),
                await _phase(redis, "status", fans, status),
            ]
            await redis.config_resetstat()
            before = await _info(redis)
            console.print("reference: redis-benchmark SET")
            bench = _redis_benchmark(port, 200_000)
            after = await _info(redis)
            set_cpu_us = (after["cpu_s"] - before["cpu_s"]) * 1e6 / 200_000
        finally:
            await redis.aclose()
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=10)
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fans": fans,
        "concurrency": CONCURRENCY,
        "phases": phases,
        "set": {"rps": bench["rps"], "redis_cpu_us": set_cpu_us},
        "bytes_per_fan": float(phases[0]["memory_delta"]) / fans,
    }


def render(r: dict[str, Any]) -> str:
    set_us = r["set"]["redis_cpu_us"]
    lines = [
        "# Waiting-room cost in Redis, per call",
        "",
        f"Run at {r['at']}: a private redis-server, one open sale, {r['fans']:,} fans, "
        f"{r['concurrency']} concurrent clients (redis-py asyncio). Reference: redis-benchmark "
        "SET on the same server, 50 clients.",
        "",
        "| call | Redis main-thread CPU per call | script wall time per call (incl. waits "
        "for a core) | ratio to SET | one sale's ceiling (one Redis thread) |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in r["phases"]:
        ratio = p["redis_cpu_us"] / set_us if set_us else 0
        lines.append(
            f"| {p['phase']} | {p['redis_cpu_us']:.1f} µs | {p['script_us']:.1f} µs | "
            f"{ratio:.1f} x | {p['ceiling_per_s']:,.0f} /s |"
        )
    lines += [
        f"| SET (reference) | {set_us:.1f} µs | - | 1.0 x | {r['set']['rps']:,.0f} /s measured |",
        "",
        f"Memory: {r['bytes_per_fan']:.0f} bytes per waiting fan (queue, seen, counters).",
        "",
        "![per call](queue_redis.png)",
        "",
        "The ceiling is 1 s divided by the CPU per call: what one Redis thread gives one sale "
        "if it did nothing else. docs/capacity.md turns it into shard counts.",
    ]
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p["phase"] for p in r["phases"]] + ["SET"]
    values = [p["redis_cpu_us"] for p in r["phases"]] + [r["set"]["redis_cpu_us"]]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(names, values, color=["#3b6ea5", "#3b6ea5", "#999999"])
    ax.set_ylabel("Redis CPU per call (µs)")
    ax.set_title("Waiting-room calls vs SET, same Redis")
    fig.tight_layout()
    fig.savefig(out / "queue_redis.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/capacity"))
    parser.add_argument("--fans", type=int, default=100_000)
    args = parser.parse_args()
    report = asyncio.run(run(args.fans))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "REPORT.md").write_text(render(report), encoding="utf-8")
    plot(report, args.out)
    table = Table(title="Redis CPU per call")
    for col in ("call", "µs", "ceiling /s"):
        table.add_column(col)
    for p in report["phases"]:
        table.add_row(str(p["phase"]), f"{p['redis_cpu_us']:.1f}", f"{p['ceiling_per_s']:,.0f}")
    table.add_row("SET", f"{report['set']['redis_cpu_us']:.1f}", f"{report['set']['rps']:,.0f}")
    console.print(table)
    console.print(f"{report['bytes_per_fan']:.0f} bytes per waiting fan; wrote {args.out}")


if __name__ == "__main__":
    main()
