"""Waiting-room fixtures: sales over real concerts, many fans with real tokens, an in-process app
with its own settings, and the real API (2 uvicorn workers) and admission worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.config import Settings
from app.core.security import hash_password, issue_access_token
from app.core.state import AppState
from app.devstack.broker import free_port, spawn, stop_process
from app.main import create_app
from app.queue.worker import AdmissionWorker
from loadtests.rush import RushConfig
from tests.booking.conftest import make_sale
from tests.conftest import PASSWORD, ROOT, LiveServer, start_api

# Everyone in these tests shares 127.0.0.1 (and some accounts join many times): rate limits
# are tested on their own with tight settings.
GENEROUS_LIMITS: dict[str, Any] = {
    "queue_join_limit_per_account": 10_000,
    "queue_join_limit_per_ip": 1_000_000,
    "queue_status_limit_per_account": 10_000,
    "queue_status_limit_per_ip": 1_000_000,
}


@dataclass(frozen=True)
class Fan:
    user_id: int
    headers: dict[str, str]


async def bulk_fans(state: AppState, settings: Settings, n: int) -> list[Fan]:
    """`n` accounts created in one statement, with real access tokens."""
    tag = uuid.uuid4().hex[:8]
    async with state.sessionmaker() as session, session.begin():
        ids = (
            (
                await session.execute(
                    text(
                        "INSERT INTO app_user (email, password_hash, display_name)"
                        " SELECT 'queue-' || :tag || '-' || g || '@example.com', :h, 'Fan ' || g"
                        " FROM generate_series(1, :n) g RETURNING id"
                    ),
                    {"tag": tag, "h": hash_password(PASSWORD), "n": n},
                )
            )
            .scalars()
            .all()
        )
    return [
        Fan(
            i, {"Authorization": f"Bearer {issue_access_token(settings, user_id=i, role='fan')[0]}"}
        )
        for i in ids
    ]


async def new_sale(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    *,
    opens_in: float = 3600,
    closes_in: float = 7200,
    concert_id: int | None = None,
    **body: Any,
) -> dict[str, Any]:
    """A sale over a fresh on-sale concert with seats and stock (or over `concert_id`)."""
    if concert_id is None:
        concert_id = (await make_sale(client, admin)).concert_id
    now = datetime.now(UTC)
    payload = {
        "concert_id": concert_id,
        "opens_at": (now + timedelta(seconds=opens_in)).isoformat(),
        "closes_at": (now + timedelta(seconds=closes_in)).isoformat(),
    } | body
    r = await client.post("/sales", json=payload, headers=admin)
    assert r.status_code == 201, r.text
    return dict(r.json())


@asynccontextmanager
async def queue_app(
    settings: Settings, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    """An in-process app with its own Redis prefix and settings overrides."""
    custom = settings.model_copy(
        update={"redis_prefix": f"{settings.redis_prefix}-q{uuid.uuid4().hex[:6]}"}
        | GENEROUS_LIMITS
        | overrides
    )
    application: FastAPI = create_app(custom)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://t"
        ) as client,
    ):
        state: AppState = application.state.tr
        try:
            yield client, state
        finally:  # the session fixture only cleans the session prefix
            async for key in state.redis.scan_iter(match=f"{custom.redis_prefix}:*", count=1000):
                await state.redis.delete(key)


async def tick_until(
    worker: AdmissionWorker,
    done: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 10,
    pause: float = 0.05,
) -> None:
    """Run the in-process worker tick by tick until `done()` holds."""
    deadline = time.monotonic() + timeout
    while True:
        await worker.tick()
        if await done():
            return
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(pause)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10, pause: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(pause)


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """TR_* environment of a subprocess sharing the test database and Redis prefix."""
    limits = {f"TR_{k.upper()}": str(v) for k, v in GENEROUS_LIMITS.items()}
    return (
        os.environ
        | {
            "TR_DATABASE_URL": settings.database_url,
            "TR_REDIS_URL": settings.redis_url,
            "TR_REDIS_PREFIX": settings.redis_prefix,
            "TR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "TR_PAYMENTS_URL": settings.payments_url,
            "TR_LOG_LEVEL": "INFO",
            "TR_QUEUE_PUSH_TICK_S": "0.2",
            # Every test signs up and logs in from 127.0.0.1 (auth limits have their own tests).
            "TR_SIGNUP_LIMIT_PER_IP": "100000",
            "TR_LOGIN_LIMIT_PER_IP": "100000",
            # Joins and status checks never touch PostgreSQL: small pools leave the shared
            # server's connections to everyone else.
            "TR_DB_POOL_SIZE": "3",
            "TR_DB_MAX_OVERFLOW": "3",
        }
        | limits
        | extra
    )


def start_two_worker_api(settings: Settings, log_path: Path) -> LiveServer:
    """The real API with 2 uvicorn worker processes (multi-process metrics in a fresh dir)."""
    port = free_port()
    env = process_env(
        settings,
        TR_API_PORT=str(port),
        TR_API_WORKERS="2",
        TR_LOG_LEVEL="WARNING",
        PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="tr-test-api-metrics-"),
    )
    return start_api(env, log_path, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="session")
def queue_api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real API with 2 uvicorn worker processes and waiting-room test settings."""
    server = start_two_worker_api(settings, tmp_path_factory.mktemp("queue-api") / "api.log")
    yield server
    stop_process(server.proc.pid)


# The demo's rush in small: 300 fans for 50 seats, opening in 4 s. Holds in the test APIs last
# minutes, so every admitted fan either buys or leaves (no abandoned holds).
SMALL_RUSH = RushConfig(
    fans=300,
    seats=50,
    opens_in_s=4,
    spike_mean_s=1,
    spike_max_s=4,
    max_active=100,
    initial_rate=100,
    min_rate=20,
    max_rate=200,
    hold_abandon_share=0,
    deadline_s=90,
    in_flight=100,
)


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no lease release, the lease must run out."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# Fast clocks: the worker ticks every 50 ms and a dead leader's lease runs out after 1 s.
WORKER_ENV = {
    "TR_ADMISSION_TICK_S": "0.05",
    "TR_ADMISSION_LEASE_TTL_MS": "1000",
    "TR_ADMISSION_SYNC_S": "0.3",
    "TR_ADMISSION_STOCK_CHECK_S": "0.3",
    "TR_ADMISSION_CONTROL_INTERVAL_S": "0.2",
    "TR_ADMISSION_METRICS_PORT": "0",
}


@pytest.fixture
def admission_workers(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `python -m app.admission` processes (stopped after the test)."""
    started: list[WorkerProcess] = []

    def start(**extra: str) -> WorkerProcess:
        log_path = tmp_path / f"admission-{len(started)}.log"
        env = process_env(settings, **WORKER_ENV, **extra)
        proc = spawn([sys.executable, "-m", "app.admission"], log_path, env=env, cwd=ROOT)
        worker = WorkerProcess(proc, log_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.alive():
            stop_process(worker.proc.pid)
