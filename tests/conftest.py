"""Session-wide real resources: a fresh PostgreSQL database (migrated by Alembic), a Redis key
prefix and a private Tansu broker per test session / xdist worker."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
from httpx import ASGITransport

from app.core.config import Settings
from app.core.migrate import upgrade
from app.devstack.broker import free_port, spawn, start_broker, stop_process, wait_broker_ready
from app.main import create_app
from tests.fixtures.booking_consumer import booking_consumer
from tests.fixtures.databases import create_database, drop_database
from tests.fixtures.payments import SimProcess, sim, sim_process

__all__ = ["booking_consumer", "sim", "sim_process"]  # fixtures shared with every test package

REDIS_URL = os.environ.get("TR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[1]


def _await_chain(coro: Any) -> list[str]:
    """Where a suspended coroutine waits: each nested await down to the innermost one."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(
                f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
            )
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def _pending_tasks() -> str:
    # The signal that ends a hung async test lands in the event loop's select, so its traceback
    # shows no await at all; the loop's pending tasks (the test's among them) show which one hung.
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    return "\n".join(
        f"{task.get_name()}:\n" + "\n".join(_await_chain(task.get_coro())) for task in tasks
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and call.excinfo is not None and "Timeout" in str(call.excinfo.value):
        report.sections.append(("asyncio tasks pending at the timeout", _pending_tasks()))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = create_database()
    upgrade(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = start_broker(port, tmp_path_factory.mktemp("tansu") / "tansu.log")
    bootstrap = f"127.0.0.1:{port}"
    asyncio.run(wait_broker_ready(bootstrap))
    yield bootstrap
    stop_process(proc.pid)


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    prefix = f"trtest-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = sync_redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)


@pytest.fixture(scope="session")
def settings(
    database_url: str, kafka_bootstrap: str, redis_prefix: str, sim_process: SimProcess
) -> Settings:
    return Settings(
        payments_url=sim_process.url,
        payments_timeout_s=1.0,
        breaker_recovery_s=1.0,
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        kafka_bootstrap=kafka_bootstrap,
        log_json=True,
        log_level="WARNING",
        # Contention tests must sell exactly the stock, so strategies may wait long rather
        # than give up (the defaults favour a fast 409 for fans); rate-limit tests use their own.
        lock_timeout_ms=30_000,
        # Two xdist workers, each with several API processes, share PostgreSQL's 100
        # connections: small pools that wait instead of failing.
        db_pool_size=5,
        db_max_overflow=5,
        db_pool_timeout=60,
        optimistic_max_retries=1_000,
        redis_lock_wait_ms=30_000,
        login_limit_per_account=1000,
        login_limit_per_ip=10_000,
        signup_limit_per_ip=10_000,
        refresh_limit_per_ip=10_000,
        booking_limit_per_account=1_000_000,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def unique_email(tag: str = "fan") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


PASSWORD = "correct horse battery staple"


async def signup_and_login(client: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    email = email or unique_email()
    r = await client.post(
        "/auth/signup", json={"email": email, "password": PASSWORD, "display_name": "Fan"}
    )
    assert r.status_code == 201, r.text
    r = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json() | {"email": email}
    return tokens


@pytest.fixture
async def fan_headers(client: httpx.AsyncClient) -> dict[str, str]:
    tokens = await signup_and_login(client)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture(scope="session")
async def admin_headers(app: object) -> dict[str, str]:
    from app.auth.models import Role
    from app.auth.service import create_user

    state = app.state.tr  # type: ignore[attr-defined]
    email = unique_email("admin")
    async with state.sessionmaker() as session:
        await create_user(
            session, email=email, password=PASSWORD, display_name="Admin", role=Role.admin
        )
    transport = ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@dataclass
class LiveServer:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path


def start_api(env: dict[str, str], log_path: Path, url: str) -> LiveServer:
    """`python -m app.api` with `env`, once its /healthz answers (30 s at most)."""
    proc = spawn([sys.executable, "-m", "app.api"], log_path, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return LiveServer(url, proc, log_path)
        except httpx.HTTPError:
            time.sleep(0.1)
    stop_process(proc.pid)
    raise RuntimeError("API did not start:\n" + log_path.read_text()[-3000:])


@pytest.fixture(scope="session")
def live_server(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The real API under uvicorn with 2 worker processes (multi-process metrics, caches)."""
    port = free_port()
    env = os.environ | {
        "TR_DATABASE_URL": settings.database_url,
        "TR_REDIS_URL": settings.redis_url,
        "TR_REDIS_PREFIX": settings.redis_prefix,
        "TR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TR_PAYMENTS_URL": settings.payments_url,
        "TR_LOCK_TIMEOUT_MS": str(settings.lock_timeout_ms),
        "TR_DB_POOL_SIZE": "3",
        "TR_DB_MAX_OVERFLOW": "3",
        "TR_DB_POOL_TIMEOUT": str(settings.db_pool_timeout),
        "TR_OPTIMISTIC_MAX_RETRIES": str(settings.optimistic_max_retries),
        "TR_REDIS_LOCK_WAIT_MS": str(settings.redis_lock_wait_ms),
        "TR_API_PORT": str(port),
        "TR_API_WORKERS": "2",
        "TR_LOG_LEVEL": "WARNING",
        # A cold load on a loaded CI machine can outlast the default 3 s single-flight lock.
        "TR_CACHE_LOCK_TTL_MS": "15000",
        "TR_LOGIN_LIMIT_PER_ACCOUNT": "1000",
        "TR_LOGIN_LIMIT_PER_IP": "10000",
        "TR_SIGNUP_LIMIT_PER_IP": "10000",
        "TR_REFRESH_LIMIT_PER_IP": "10000",
        "TR_BOOKING_LIMIT_PER_ACCOUNT": "1000000",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="tr-test-metrics-"),
    }
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    server = start_api(env, log_path, f"http://127.0.0.1:{port}")
    yield server
    stop_process(server.proc.pid)
