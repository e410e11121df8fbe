import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from app.core.config import PROJECT_ROOT, Settings
from app.devstack import StackError
from app.devstack.broker import free_port, process_alive, wait_broker_ready
from app.devstack.stack import app_processes, load_stack_env

SHARED_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
STACK_CLI = "from app.devstack.cli import stack_app; stack_app()"


def run_stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", STACK_CLI, *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def stack_json(run_dir: Path) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads((run_dir / "stack.json").read_text())["components"]}


@pytest.fixture
async def database() -> AsyncIterator[str]:
    name = f"tr_devstack_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(SHARED_PG)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def test_up_is_idempotent_and_down_stops_only_what_it_started(
    tmp_path: Path, database: str
) -> None:
    run_dir = tmp_path / "run"
    env = {
        "TR_RUN_DIR": str(run_dir),
        "TR_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
        "TR_REDIS_URL": "redis://127.0.0.1:6379/0",
        "TR_API_PORT": "18999",
    }
    try:
        first = run_stack(env, "up")
        assert first.returncode == 0, first.stdout + first.stderr

        stack_env = load_stack_env(run_dir)
        assert set(stack_env) == {
            "TR_DATABASE_URL",
            "TR_REDIS_URL",
            "TR_KAFKA_BOOTSTRAP",
            "TR_API_PORT",
            "TR_API_CHECKOUT_PORT",
            "TR_PAYMENTS_PORT",
            "TR_PAYMENTS_URL",
            "TR_JWT_SECRET",
            "TR_STREAMING_CALLBACK_SECRET",
            "TR_STREAMING_INGEST_URL",
            "TR_STREAMING_HLS_BASE_URL",
        }
        assert stack_env["TR_DATABASE_URL"] == env["TR_DATABASE_URL"]
        assert stack_env["TR_REDIS_URL"] == env["TR_REDIS_URL"]
        assert stack_env["TR_API_PORT"] == "18999"
        assert re.fullmatch(r"[0-9a-f]{64}", stack_env["TR_JWT_SECRET"])
        assert re.fullmatch(r"[0-9a-f]{64}", stack_env["TR_STREAMING_CALLBACK_SECRET"])
        assert stack_env["TR_STREAMING_CALLBACK_SECRET"] != stack_env["TR_JWT_SECRET"]
        await wait_broker_ready(stack_env["TR_KAFKA_BOOTSTRAP"], timeout=5)

        conn = await asyncpg.connect(SHARED_PG)
        try:
            assert await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        finally:
            await conn.close()

        components = stack_json(run_dir)
        assert {c["kind"] for c in components.values()} == {"shared", "private"}
        assert components["postgres"]["pid"] is None and components["redis"]["pid"] is None
        broker_pid = components["broker"]["pid"]

        second = run_stack(env, "up")
        assert second.returncode == 0, second.stdout + second.stderr
        assert stack_json(run_dir)["broker"]["pid"] == broker_pid
        assert load_stack_env(run_dir) == stack_env

        status = run_stack(env, "status")
        assert status.returncode == 0, status.stdout
        assert "broker" in status.stdout and "alive" in status.stdout

        down = run_stack(env, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert not process_alive(broker_pid)
        assert not (run_dir / "stack.json").exists()
        assert (run_dir / "logs" / "broker.log").exists()
        with pytest.raises(StackError):
            load_stack_env(run_dir)

        after = run_stack(env, "status")
        assert after.returncode == 1
        assert "nothing running" in after.stdout
        # The machine's shared services are untouched.
        redis = Redis.from_url(env["TR_REDIS_URL"])
        try:
            assert await redis.ping()
        finally:
            await redis.aclose()
    finally:
        run_stack(env, "down")


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    # The private cluster runs as the `postgres` user when we are root: it must reach the dir.
    path = Path(tempfile.mkdtemp(prefix="tr-devstack-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_private_postgres_and_redis_when_nothing_answers(world_readable_dir: Path) -> None:
    run_dir = world_readable_dir / "run"
    env = {
        "TR_RUN_DIR": str(run_dir),
        # Ports nothing listens on: the stack has to start its own servers.
        "TR_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/tr_private",
        "TR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/2",
    }
    try:
        up = run_stack(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        components = stack_json(run_dir)
        assert {c["kind"] for c in components.values()} == {"private"}
        stack_env = load_stack_env(run_dir)

        conn = await asyncpg.connect(stack_env["TR_DATABASE_URL"].replace("+asyncpg", ""))
        try:
            assert await conn.fetchval("SELECT current_database()") == "tr_private"
        finally:
            await conn.close()
        redis = Redis.from_url(stack_env["TR_REDIS_URL"])
        try:
            assert await redis.ping()
        finally:
            await redis.aclose()

        down = run_stack(env, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        for component in components.values():
            assert not process_alive(component["pid"]), component
    finally:
        run_stack(env, "down")


def test_with_app_runs_a_checkout_api_beside_the_main_one() -> None:
    """The checkout bulkhead: its own single-worker API process on its own port, the main API
    keeping the configured port and workers, consumers numbered after the first."""
    settings = Settings(api_port=18000, api_checkout_port=18001, api_workers=3)
    processes = app_processes(settings)
    assert processes["api"][1] == {}
    argv, extra = processes["api-checkout"]
    assert argv == processes["api"][0]
    assert extra == {"TR_API_PORT": "18001", "TR_API_WORKERS": "1"}
    assert list(processes).index("api-checkout") < list(processes).index("admission")
