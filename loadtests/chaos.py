"""`make chaos`: ticket rushes with one fault each, and the invariants checked after every one.

Each scenario starts its own local stack (`app/devstack`: Tansu broker, API with 2 workers,
admission worker, 2 booking consumers, payment simulator) on free ports, in its own run dir,
against a private `redis-server` and the database `ticket_rush_chaos`, runs a small rush
(loadtests/rush.py), injects its fault once enough tickets are sold for bookings to be flowing,
lets the platform recover, and checks from PostgreSQL, the broker and the payment simulator:
oversold 0, double-booked 0, every acknowledged booking request (202) and every paid booking
present, nothing applied or charged twice, no 5xx other than problem+json 503s, every fan
answered. `reports/resilience/REPORT.md` and `timeline.png` are written; the exit code is
non-zero when any scenario fails.

    python -m loadtests.chaos --out reports/resilience [--scenario NAME ...] [--fans N --seats M]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.booking.messages import REQUESTS_TOPIC
from app.core.config import PROJECT_ROOT, Settings
from app.devstack import StackError, stack
from app.devstack.broker import free_port, process_alive, spawn, wait_gone
from loadtests.rush import RushConfig, RushOutcome, failed_invariants, kafka_offsets, run_rush

console = Console()

# What every app process of a chaos stack runs with, on top of the stack's own env: the demo's
# settings (all fans come from 127.0.0.1; holds and admissions time out within the run), no
# fixed metrics ports and free RTMP/HLS ports, so a chaos stack never collides with `make dev`.
CHAOS_ENV = {
    "TR_QUEUE_JOIN_LIMIT_PER_IP": "10000000",
    "TR_QUEUE_STATUS_LIMIT_PER_IP": "100000000",
    "TR_HOLD_TTL_S": "20",
    # Admitted fans who gave up hold their slot until the token expires, so the line waits that
    # long for a seat that comes back late; long enough to shop through a fault on a busy box.
    "TR_ADMISSION_TOKEN_TTL_S": "120",
    "TR_QUEUE_GRACE_S": "180",
    "TR_QUEUE_POLL_MAX_S": "10",
    "TR_QUEUE_PUSH_TICK_S": "2",
    "TR_PAYMENTS_SIM_DECLINE_RATE": "0.08",
    "TR_PAYMENTS_SIM_LATENCY_MS": "120",
    "TR_PAYMENTS_SIM_JITTER_MS": "80",
    "TR_BOOKING_CONSUMER_METRICS_PORT": "0",
    "TR_ADMISSION_METRICS_PORT": "0",
}
CHAOS_DATABASE = "ticket_rush_chaos"
# A 202 answered this long after the broker froze was acked by a broker that could not ack.
ACK_MARGIN_S = 1.0


def chaos_rush(fans: int, seats: int) -> RushConfig:
    """A short rush: a few seconds of pre-queue, a spike, sold out within a minute or so."""
    return RushConfig(
        fans=fans,
        seats=seats,
        opens_in_s=6.0,
        spike_mean_s=5.0,
        spike_max_s=20.0,
        max_active=max(50, seats),
        initial_rate=100.0,
        min_rate=20.0,
        max_rate=300.0,
        deadline_s=360.0,
        in_flight=128,
        rejoins=2,
    )


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    # The stack starts app processes with os.environ + its own env; restored afterwards, so a
    # test process is not left with a chaos stack's settings.
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The stack starts each process as the leader of its own group (uvicorn's workers with it).
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


class ChaosStack:
    """A local stack of its own: run dir, free ports, a private Redis it can crash."""

    def __init__(self, run_dir: Path, database_url: str, env: dict[str, str] | None = None) -> None:
        self.run_dir = run_dir
        self.database_url = database_url
        self.redis_port = free_port()
        self.redis_proc: Any = None
        self.frozen: set[int] = set()
        self.quiet = Console(file=io.StringIO(), width=200)
        self.env: dict[str, str] = {}
        self.environ = (
            CHAOS_ENV
            | {
                "TR_RUN_DIR": str(run_dir),
                "TR_DATABASE_URL": database_url,
                "TR_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "TR_API_PORT": str(free_port()),
                "TR_PAYMENTS_PORT": str(free_port()),
                "TR_STACK_RTMP_PORT": str(free_port()),
                "TR_STACK_HLS_PORT": str(free_port()),
            }
            | (env or {})
        )

    @property
    def stack_settings(self) -> Settings:
        with _environ(self.environ):
            return Settings()

    @property
    def settings(self) -> Settings:
        """What the rush needs to reach the stack (its database, Redis, broker, JWT secret)."""
        return Settings(
            database_url=self.env["TR_DATABASE_URL"],
            redis_url=self.env["TR_REDIS_URL"],
            kafka_bootstrap=self.env["TR_KAFKA_BOOTSTRAP"],
            jwt_secret=self.env["TR_JWT_SECRET"],
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['TR_API_PORT']}"

    @property
    def payments_url(self) -> str:
        return self.env["TR_PAYMENTS_URL"]

    async def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        await self.start_redis()
        await self.up()

    async def up(self) -> None:
        """`stack up --with-app`: starts whatever app process is not running (a restart)."""
        with _environ(self.environ):
            self.env = await stack.up(self.stack_settings, with_app=True, console=self.quiet)

    async def start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        data = self.run_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [server, "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        # No persistence, like the machine's Redis: a crash loses everything.
        argv += ["--save", "", "--appendonly", "no", "--dir", str(data), "--daemonize", "no"]
        self.redis_proc = spawn(argv, self.run_dir / "logs" / "redis.log")
        client = Redis(port=self.redis_port, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    await client.ping()
                    return
                except (RedisError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def crash_redis(self) -> None:
        self.redis_proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.redis_proc.wait, 10)

    async def pids(self) -> dict[str, int]:
        rows = await stack.status(self.stack_settings)
        return {r.component.name: r.component.pid for r in rows if r.component.pid}

    def freeze(self, pid: int) -> None:
        self.frozen.add(pid)
        _signal_group(pid, signal.SIGSTOP)

    def thaw(self, pid: int) -> None:
        _signal_group(pid, signal.SIGCONT)
        self.frozen.discard(pid)

    async def stop(self) -> None:
        for pid in list(self.frozen):
            self.thaw(pid)
        with _environ(self.environ), contextlib.suppress(StackError):
            await asyncio.to_thread(stack.down, self.stack_settings, self.quiet)
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            await asyncio.to_thread(self.redis_proc.wait, 10)


# --- faults -----------------------------------------------------------------------------------


@dataclass
class Fault:
    """What was done to the stack, when (seconds since the sale opened), and what it saw."""

    injected: int = 0
    started_s: float | None = None
    ended_s: float | None = None
    in_flight: int = 0  # the generator's HTTP requests on the wire at injection
    kafka_lag: int | None = None  # booking requests in the broker not yet applied, at injection
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Context:
    stack: ChaosStack
    fault: Fault
    opens_mono: float

    def now(self) -> float:
        return time.monotonic() - self.opens_mono


async def _metrics(base_url: str) -> dict[str, float]:
    """Circuit breaker transitions seen by the API (shared across its workers)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        body = (await client.get("/metrics")).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "tr_circuit_breaker_transitions_total":
                key = f"breaker {sample.labels.get('breaker')} -> {sample.labels.get('to')}"
                out[key] = out.get(key, 0) + sample.value
    return out


async def kill_consumer(ctx: Context) -> None:
    pids = await ctx.stack.pids()
    victim = pids["booking-consumer"]
    os.kill(victim, signal.SIGKILL)
    await asyncio.to_thread(wait_gone, victim, 10)
    ctx.fault.injected = 1
    ctx.fault.notes.append(f"t={ctx.now():.1f}s SIGKILL booking-consumer pid {victim}")
    await asyncio.sleep(3)
    await ctx.stack.up()
    restarted = (await ctx.stack.pids())["booking-consumer"]
    ctx.fault.facts["restarted"] = restarted != victim and process_alive(restarted)
    ctx.fault.notes.append(
        f"t={ctx.now():.1f}s restarted by `stack up --with-app` as pid {restarted}"
    )


async def terminate_backends(ctx: Context) -> None:
    url = make_url(ctx.stack.database_url)
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        for round_ in range(3):
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text(
                            "SELECT state, pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = :db AND application_name = 'ticket-rush'"
                            " AND pid <> pg_backend_pid()"
                        ),
                        {"db": url.database},
                    )
                ).all()
            killed = Counter(state or "?" for state, ok in rows if ok)
            in_tx = sum(n for state, n in killed.items() if state != "idle")
            ctx.fault.injected += sum(killed.values())
            ctx.fault.facts["mid_transaction"] = ctx.fault.facts.get("mid_transaction", 0) + in_tx
            ctx.fault.notes.append(
                f"t={ctx.now():.1f}s round {round_ + 1}: terminated "
                + ", ".join(f"{n} {state}" for state, n in killed.most_common())
            )
            await asyncio.sleep(1.5)
    finally:
        await engine.dispose()


async def _key_census(port: int) -> Counter[str]:
    """Redis keys by kind (the part after the prefix and hash tag, ids dropped)."""
    client = Redis(port=port, socket_connect_timeout=2)
    try:
        kinds: Counter[str] = Counter()
        async for raw in client.scan_iter(count=1000):
            key = raw.decode().replace("{", "").replace("}", "")
            # Ids (numbers, request uuids) dropped: "sale:queue", "booking-request", ...
            parts = [p for p in key.split(":")[1:] if not p.isdigit() and len(p) < 32]
            kinds[":".join(parts[:3])] += 1
        return kinds
    finally:
        await client.aclose()


async def restart_redis(ctx: Context) -> None:
    port = ctx.stack.redis_port
    before = await _key_census(port)
    await ctx.stack.crash_redis()
    ctx.fault.injected = 1
    ctx.fault.notes.append(f"t={ctx.now():.1f}s SIGKILL redis-server ({sum(before.values())} keys)")
    await asyncio.sleep(1)
    await ctx.stack.start_redis()
    ctx.fault.notes.append(f"t={ctx.now():.1f}s redis-server restarted empty on port {port}")
    await asyncio.sleep(8)
    after = await _key_census(port)
    ctx.fault.facts["keys_before"] = dict(before)
    ctx.fault.facts["keys_after_8s"] = dict(after)


async def freeze_payments(ctx: Context) -> None:
    base = await _metrics(ctx.stack.base_url)
    pid = (await ctx.stack.pids())["payments-sim"]
    ctx.stack.freeze(pid)
    ctx.fault.injected = 1
    ctx.fault.notes.append(f"t={ctx.now():.1f}s SIGSTOP payments-sim pid {pid} (hangs)")
    await asyncio.sleep(15)
    ctx.stack.thaw(pid)
    ctx.fault.notes.append(f"t={ctx.now():.1f}s SIGCONT payments-sim")
    ctx.fault.facts["breaker_before"] = base


async def freeze_broker(ctx: Context) -> None:
    pid = (await ctx.stack.pids())["broker"]
    ctx.stack.freeze(pid)
    frozen_at = ctx.now()
    ctx.fault.injected = 1
    ctx.fault.notes.append(f"t={frozen_at:.1f}s SIGSTOP Tansu broker pid {pid} (unreachable)")
    await asyncio.sleep(10)
    ctx.fault.facts["frozen"] = (frozen_at, ctx.now())
    ctx.stack.thaw(pid)
    ctx.fault.notes.append(f"t={ctx.now():.1f}s SIGCONT broker")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    expectation: str
    inject: Callable[[Context], Awaitable[None]]
    trigger_sold: float = 0.15  # inject once this share of the seats is sold


SCENARIOS = (
    Scenario(
        "consumer-kill",
        "Booking consumer SIGKILLed and restarted",
        "The killed member's partitions move to the other consumer after the session timeout "
        "and back on restart; requests it had applied but not committed are redelivered and "
        "dropped by the inbox. Every 202 ends in exactly one outcome, nothing is booked twice.",
        kill_consumer,
    ),
    Scenario(
        "pg-terminate",
        "PostgreSQL backends terminated mid-transaction (3 rounds)",
        "Every app connection is killed (pg_terminate_backend), in and out of transactions, "
        "three times 1.5 s apart. Open transactions roll back; the API answers those requests "
        "503 problem+json (fans retry) and replaces the connections; consumers retry the batch. "
        "No 500, nothing half-written, nothing lost.",
        terminate_backends,
    ),
    Scenario(
        "redis-restart",
        "Private Redis crashed (SIGKILL, no persistence) and restarted empty",
        "Rebuilt from PostgreSQL: the sale's status, window and rate (admission sync) and the "
        "seat inventory (on the next claim, minus claims still in Kafka). Lost by design: places "
        "in line, admissions, pending request statuses, rate-limit windows, breaker state; fans "
        "see 404 not-in-queue / 403 admission-revoked and rejoin. Nobody is sold a seat twice and "
        "no acknowledged booking is lost (they are in Kafka or PostgreSQL, not only in Redis).",
        restart_redis,
    ),
    Scenario(
        "payments-outage",
        "Payment simulator frozen 15 s (SIGSTOP) and resumed",
        "Charges time out; the shared breaker opens after 5 failures and pay answers 503 "
        "problem+json at once; holds with a payment in flight are kept (grace); after the "
        "provider returns, the breaker half-opens and closes. Retried charges reuse their "
        "idempotency key: no booking is charged twice and no charge is left without a ticket "
        "or a refund.",
        freeze_payments,
    ),
    Scenario(
        "broker-unreachable",
        "Tansu broker frozen 10 s (SIGSTOP) and resumed",
        "Produces get no ack: the API answers 503 problem+json booking-queue-unavailable "
        "instead of 202 and withdraws the Redis claim; no 202 is given while the broker is "
        "frozen; every request acknowledged before is applied after it resumes. A produce that "
        "timed out may still land (ambiguous ack, docs/redis-claim.md): it is applied under its "
        "own request id, so more requests may reach the database than were acknowledged.",
        freeze_broker,
    ),
)


# --- one scenario ---------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    scenario: Scenario
    fault: Fault
    outcome: RushOutcome | None
    row: dict[str, Any]
    failures: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures


async def _present(engine: AsyncEngine, outcome: RushOutcome) -> dict[str, Any]:
    """Each acknowledged request and paid booking looked up in PostgreSQL."""
    acked = sorted({rid for f in outcome.fans for rid, _ in f.accepted})
    paid = sorted({b for f in outcome.fans for b in f.confirmed_bookings})
    async with engine.connect() as conn:
        found = {
            str(r[0])
            for r in await conn.execute(
                text("SELECT request_id FROM booking_inbox WHERE request_id = ANY(:ids)"),
                {"ids": [uuid.UUID(r) for r in acked]},
            )
        }
        confirmed = {
            r[0]
            for r in await conn.execute(
                text("SELECT id FROM booking WHERE id = ANY(:ids) AND status = 'confirmed'"),
                {"ids": paid},
            )
        }
        payments = (
            await conn.execute(
                text(
                    "SELECT p.booking_id, p.provider_key, p.status, b.status FROM payment p"
                    " JOIN booking b ON b.id = p.booking_id WHERE b.concert_id = :c"
                ),
                {"c": outcome.concert_id},
            )
        ).all()
    return {
        "acked": len(acked),
        "paid": len(paid),
        "lost_requests": len(set(acked) - found),
        "lost_paid": len(set(paid) - confirmed),
        "payments": payments,
    }


async def _settle(engine: AsyncEngine, concert_id: int, timeout_s: float = 30) -> int:
    """Wait for the sweepers to refund payments left pending on released holds (a few seconds
    once the sale has closed); how many are still pending."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with engine.connect() as conn:
            left = int(
                await conn.scalar(
                    text(
                        "SELECT count(*) FROM payment p JOIN booking b ON b.id = p.booking_id"
                        " WHERE b.concert_id = :c AND p.status = 'pending'"
                        " AND b.status IN ('expired', 'cancelled')"
                    ),
                    {"c": concert_id},
                )
                or 0
            )
        if left == 0 or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(1)


async def _charges(payments_url: str, payments: list[Any]) -> dict[str, int]:
    """The provider's view: charges per booking, and charges that bought nothing."""
    succeeded: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=payments_url, timeout=10) as client:
        for booking_id, key, _, booking_status in payments:
            r = await client.get(f"/charges/{key}")
            if r.status_code == 200 and r.json()["status"] == "succeeded":
                succeeded[booking_id] += 1
                if booking_status != "confirmed":
                    succeeded[-booking_id] += 1  # marked: charged, no ticket, not refunded
    return {
        "double_charged": sum(1 for b, n in succeeded.items() if b > 0 and n > 1),
        "charged_no_ticket": sum(1 for b in succeeded if b < 0),
        "charges": sum(n for b, n in succeeded.items() if b > 0),
    }


def _specific_failures(scenario: Scenario, fault: Fault, outcome: RushOutcome) -> list[str]:
    failures = []
    rec = outcome.recorder
    if scenario.name == "consumer-kill" and not fault.facts.get("restarted"):
        failures.append("the killed consumer was not restarted")
    if scenario.name == "pg-terminate" and not fault.injected:
        failures.append("no backend was terminated")
    if scenario.name == "payments-outage":
        before = fault.facts.get("breaker_before", {})
        after = fault.facts.get("breaker_after", {})
        for to in ("open", "closed"):
            key = f"breaker payments -> {to}"
            if after.get(key, 0) <= before.get(key, 0):
                failures.append(f"the payments breaker never went {to}")
    if scenario.name == "broker-unreachable":
        start, end = fault.facts.get("frozen", (None, None))
        if start is not None:
            late = [
                t for f in outcome.fans for _, t in f.accepted if start + ACK_MARGIN_S <= t <= end
            ]
            fault.facts["acks_while_frozen"] = len(late)
            if late:
                failures.append(f"{len(late)} requests answered 202 while the broker was frozen")
        unavailable = sum(
            n
            for (kind, status, kind_), n in rec.problems.items()
            if kind == "book" and status == 503 and kind_.endswith("/booking-queue-unavailable")
        )
        fault.facts["book_503"] = unavailable
        if not unavailable:
            failures.append("the API never answered 503 booking-queue-unavailable")
    return failures


async def run_scenario(
    scenario: Scenario,
    *,
    cfg: RushConfig,
    run_dir: Path,
    database_url: str,
    env: dict[str, str] | None = None,
) -> ScenarioResult:
    """Start a stack, run the rush with the fault, check the invariants, stop the stack.
    `env` overrides CHAOS_ENV for the app processes."""
    chaos = ChaosStack(run_dir, database_url, env)
    fault = Fault()
    outcome: RushOutcome | None = None
    failures: list[str] = []
    extra: dict[str, Any] = {}
    try:
        await chaos.start()
        started = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        opens: dict[str, float] = {}

        async def on_progress(p: dict[str, Any]) -> None:
            sample = p["sample"]
            opens.setdefault("mono", time.monotonic() - p["t"])
            if tasks or sample is None or sample.sold < scenario.trigger_sold * cfg.seats:
                return
            fault.started_s = p["t"]
            fault.in_flight = p["in_flight"]
            ctx = Context(chaos, fault, opens["mono"])

            async def inject() -> None:
                with contextlib.suppress(Exception):
                    offsets = await kafka_offsets(chaos.settings)
                    lag = offsets[f"{REQUESTS_TOPIC}:end"] - offsets[f"{REQUESTS_TOPIC}:committed"]
                    fault.kafka_lag = max(0, lag)  # the two reads are not atomic
                try:
                    await scenario.inject(ctx)
                except Exception as exc:  # a failed injection fails the scenario, visibly
                    fault.error = f"{type(exc).__name__}: {exc}"
                fault.ended_s = ctx.now()

            tasks.append(asyncio.create_task(inject()))

        outcome = await run_rush(
            base_url=chaos.base_url, settings=chaos.settings, cfg=cfg, on_progress=on_progress
        )
        if tasks:
            await tasks[0]
        if scenario.name == "payments-outage":
            fault.facts["breaker_after"] = await _metrics(chaos.base_url)
        engine = create_async_engine(chaos.settings.database_url, poolclass=NullPool)
        try:
            unsettled = await _settle(engine, outcome.concert_id)
            extra = await _present(engine, outcome)
            extra["unsettled_payments"] = unsettled
        finally:
            await engine.dispose()
        extra |= await _charges(chaos.payments_url, extra.pop("payments"))
        extra["duration_s"] = time.monotonic() - started
    except Exception as exc:  # a stack that did not start or a rush that broke: a failed row
        failures.append(f"scenario aborted: {type(exc).__name__}: {exc}")
    finally:
        await chaos.stop()
    if fault.error:
        failures.append(f"fault injection failed: {fault.error}")
    if outcome is None:
        row = _row(scenario, fault, None, extra)
        return ScenarioResult(scenario, fault, None, row, failures, extra)
    if not fault.injected:
        failures.append("the fault was never injected")
    checks = outcome.checks
    # Set-based (rush.verify): every acknowledged request has its outcome, and resends of one
    # request (a retry after an ambiguous 503 from a frozen broker) count once.
    failures += failed_invariants(checks)
    failures += _specific_failures(scenario, fault, outcome)
    row = _row(scenario, fault, outcome, extra)
    for key in ("lost", "duplicated", "server_errors"):
        if row[key]:
            failures.append(f"{key} {row[key]}")
    if extra.get("charged_no_ticket"):
        failures.append(f"{extra['charged_no_ticket']} charges without a ticket or refund")
    return ScenarioResult(scenario, fault, outcome, row, failures, extra)


def _row(
    scenario: Scenario, fault: Fault, outcome: RushOutcome | None, extra: dict[str, Any]
) -> dict[str, Any]:
    c = outcome.checks if outcome is not None else {}
    server_errors = (
        sum(
            n
            for (_, status, kind), n in outcome.recorder.problems.items()
            if status != 503 or kind.startswith("not problem") or kind.startswith("malformed")
        )
        if outcome is not None
        else None
    )
    duplicated = (
        max(0, c["db_bookings"] - c["db_held_outcomes"]) + extra.get("double_charged", 0)
        if c
        else None
    )
    return {
        "scenario": scenario.name,
        "faults": fault.injected,
        "in_flight": fault.in_flight,
        "kafka_lag": fault.kafka_lag,
        "acked": extra.get("acked"),
        "paid": extra.get("paid"),
        "lost": (extra["lost_requests"] + extra["lost_paid"]) if "lost_requests" in extra else None,
        "duplicated": duplicated,
        "oversold": c.get("oversold"),
        "double_booked": c.get("double_booked"),
        "unanswered": c.get("unanswered"),
        "server_errors": server_errors,
        "retried_503": (
            sum(n for (_, status, _), n in outcome.recorder.problems.items() if status == 503)
            if outcome is not None
            else None
        ),
    }


# --- report -----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def plot(results: list[ScenarioResult]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(8, 1.9 * len(results)), squeeze=False)
    for ax, res in zip(axes[:, 0], results, strict=True):
        if res.outcome is not None:
            samples = res.outcome.samples
            ts = [s.t for s in samples]
            ax.plot(ts, [s.sold for s in samples], label="tickets sold")
            ax.plot(ts, [s.admitted_active for s in samples], label="admitted, shopping")
            ax.plot(ts, [s.queue_length for s in samples], label="waiting", linewidth=0.8)
        if res.fault.started_s is not None:
            end = res.fault.ended_s if res.fault.ended_s is not None else res.fault.started_s
            ax.axvspan(
                res.fault.started_s,
                max(end, res.fault.started_s + 0.5),
                color="red",
                alpha=0.2,
                label="fault",
            )
        verdict = "pass" if res.passed else "FAIL"
        ax.set_title(f"{res.scenario.name}: {verdict}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_ylabel("fans / tickets", fontsize=7)
    axes[0, 0].legend(fontsize=6, ncol=4, loc="upper left")
    axes[-1, 0].set_xlabel("seconds since the sale opened", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def render_markdown(results: list[ScenarioResult], cfg: RushConfig, started: datetime) -> str:
    ok = all(r.passed for r in results)
    lines = [
        "# Ticket-Rush resilience: a rush under faults (`make chaos`)",
        "",
        f"Run at {started.isoformat(timespec='seconds')} on this machine (2 cores shared with "
        "other work). Each scenario starts its own local stack (Tansu broker, API with 2 uvicorn "
        "workers, admission worker, 2 booking consumers, payment simulator) against a private "
        "`redis-server` and PostgreSQL, runs a rush of "
        f"{cfg.fans:,} fans for {cfg.seats:,} seats (per-fan limit 4, hold TTL 20 s, 8% of "
        "payments declined; fans behave as in `make demo`, and rejoin up to twice when their "
        "place is lost), injects the fault once "
        "enough tickets are sold for bookings to be flowing, and checks the invariants from "
        "PostgreSQL, the broker and the payment simulator after the rush.",
        "",
        "## Result: " + ("**every scenario passes**" if ok else "**FAILED**"),
        "",
        "| scenario | faults injected | requests in flight at injection | booking requests "
        "in Kafka at injection | acknowledged (202 / paid) | lost | duplicated | oversold | "
        "double-booked | unanswered | 5xx other than 503 | 503s retried | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        w = r.row
        lines.append(
            f"| {w['scenario']} | {_cell(w['faults'])} | {_cell(w['in_flight'])} | "
            f"{_cell(w['kafka_lag'])} | {_cell(w['acked'])} / {_cell(w['paid'])} | "
            f"{_cell(w['lost'])} | {_cell(w['duplicated'])} | {_cell(w['oversold'])} | "
            f"{_cell(w['double_booked'])} | {_cell(w['unanswered'])} | "
            f"{_cell(w['server_errors'])} | {_cell(w['retried_503'])} | "
            f"{'pass' if r.passed else '**FAIL**'} |"
        )
    lines += [
        "",
        "- *requests in flight*: the generator's HTTP requests on the wire when the fault hit; "
        "*booking requests in Kafka*: produced, not yet committed by the consumers.",
        "- *lost*: acknowledged booking requests (202) with no outcome in the inbox table, plus "
        "bookings a fan paid for (200 confirmed) that are not confirmed in PostgreSQL.",
        "- *duplicated*: bookings without their own held outcome (a request applied twice), "
        "plus bookings the payment simulator charged more than once.",
        "- *oversold / double-booked / unanswered*: the checks of `make demo` "
        "(`loadtests/rush.py: verify`), which also require sold = seats, "
        "202s = produced = processed = outcomes and tickets fans received = sold.",
        "",
        "![timeline](timeline.png)",
        "",
    ]
    for r in results:
        lines += [f"## {r.scenario.name}: {r.scenario.title}", ""]
        lines += [f"**Expectation.** {r.scenario.expectation}", ""]
        lines += ["**What happened.**", ""]
        lines += [f"- {n}" for n in r.fault.notes] or ["- (no fault was injected)"]
        for key, value in r.fault.facts.items():
            if key not in ("frozen", "restarted"):
                lines.append(f"- {key}: {_facts(value)}")
        if r.outcome is not None:
            o, c = r.outcome, r.outcome.checks
            lines += [
                f"- sold {c['sold']:,} of {c['seats']:,}; sale closed "
                + (f"{o.sold_out_after_s:.1f} s" if o.sold_out_after_s is not None else "never")
                + f" after opening; every fan answered after {o.finished_after_s:.1f} s; "
                f"{o.recorder.requests:,} requests",
                f"- payments: {r.extra.get('charges', 0):,} bookings charged at the provider, "
                f"{r.extra.get('double_charged', 0)} charged twice, "
                f"{r.extra.get('charged_no_ticket', 0)} charged without a ticket or refund "
                f"({r.extra.get('unsettled_payments', 0)} payments on released holds still "
                "pending after 30 s)",
                f"- flow: {c['accepted_202']:,} accepted, {c['kafka_produced']:,} produced, "
                f"{c['kafka_processed']:,} processed, {c['db_outcomes']:,} outcomes in the inbox",
                "- fans' answers: "
                + ", ".join(f"{k} {v:,}" for k, v in Counter(c["answers"]).most_common()),
                f"- fans who rejoined after losing their place: "
                f"{sum(1 for f in o.fans if f.rejoined):,}",
                "- error answers by (request, status): "
                + (
                    ", ".join(
                        f"{k} {st}: {n:,}"
                        for (k, st), n in sorted(o.recorder.statuses.items())
                        if st >= 400 and (k, st) != ("book", 409)
                    )
                    or "none"
                )
                + f" (and {o.recorder.statuses.get(('book', 409), 0):,} book 409 seat taken)",
                "- server errors by (request, status, problem type): "
                + (
                    ", ".join(
                        f"{k} {s} {t.rsplit('/', 1)[-1]}: {n:,}"
                        for (k, s, t), n in sorted(o.recorder.problems.items())
                    )
                    or "none"
                ),
                "- client-side retries and errors: "
                + (", ".join(f"{k}: {v:,}" for k, v in o.recorder.errors.most_common(8)) or "none"),
            ]
        lines += ["", "**Checks.** " + ("all hold" if r.passed else "; ".join(r.failures)), ""]
    return "\n".join(lines)


def _facts(value: Any) -> str:
    if isinstance(value, dict):
        return (
            ", ".join(
                f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in sorted(value.items())
            )
            or "none"
        )
    return str(value)


def write_report(
    out: Path, results: list[ScenarioResult], cfg: RushConfig, started: datetime
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "REPORT.md").write_text(render_markdown(results, cfg, started), encoding="utf-8")
    (out / "timeline.png").write_bytes(plot(results))


async def run_all(
    scenarios: list[Scenario], *, cfg: RushConfig, run_root: Path, database_url: str, out: Path
) -> list[ScenarioResult]:
    # SIGTERM (a `timeout`, CI) cancels like Ctrl-C does, so the scenario's stack is stopped.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results = []
    started = datetime.now(UTC)
    for scenario in scenarios:
        console.print(f"[bold]{scenario.name}[/]: {scenario.title}")
        result = await run_scenario(
            scenario, cfg=cfg, run_dir=run_root / scenario.name, database_url=database_url
        )
        verdict = (
            "[green]pass[/]" if result.passed else "[red]FAIL[/] " + "; ".join(result.failures)
        )
        console.print(f"  {result.row}\n  {verdict}")
        results.append(result)
        write_report(out, results, cfg, started)  # after each one: a long run shows progress
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("reports/resilience"))
    parser.add_argument("--fans", type=int, default=1000)
    parser.add_argument("--seats", type=int, default=200)
    names = [s.name for s in SCENARIOS]
    parser.add_argument("--scenario", action="append", choices=names, help="default: all")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if s.name in (args.scenario or names)]
    cfg = chaos_rush(args.fans, args.seats)
    database_url = make_url(Settings().database_url).set(database=CHAOS_DATABASE)
    results = asyncio.run(
        run_all(
            chosen,
            cfg=cfg,
            run_root=PROJECT_ROOT / ".run" / "chaos",
            database_url=database_url.render_as_string(hide_password=False),
            out=args.out,
        )
    )
    console.print(f"wrote {args.out / 'REPORT.md'} and {args.out / 'timeline.png'}")
    sys.exit(0 if all(r.passed for r in results) else 1)


if __name__ == "__main__":
    main()
