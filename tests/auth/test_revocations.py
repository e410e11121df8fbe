"""The per-process copy of logged-out access tokens: every process refuses a logged-out token,
a process out of sync asks Redis, and a process whose Redis restarted syncs again."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.redis import Keys
from app.core.revocations import RevocationList
from app.devstack.broker import free_port
from tests.conftest import REDIS_URL, LiveServer, signup_and_login


async def _synced(*lists: RevocationList, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not all(r.synced for r in lists):
        assert time.monotonic() < deadline, "revocation list never synced"
        await asyncio.sleep(0.05)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_a_revocation_reaches_every_process_and_unsynced_ones_ask_redis(
    redis: Redis,
) -> None:
    keys = Keys(f"trtest-rev-{uuid.uuid4().hex[:8]}")
    # Separate clients, as separate processes would have.
    clients = [Redis.from_url(REDIS_URL) for _ in range(3)]
    here, there, cold = (RevocationList(c, keys, horizon_s=900) for c in clients)
    try:
        here.start()
        there.start()
        await _synced(here, there)
        old = uuid.uuid4().hex
        await here.revoke(old, time.time() + 600)
        assert await here.is_revoked(old)  # the process that logged out: at once
        deadline = time.monotonic() + 2
        while not await there.is_revoked(old):
            assert time.monotonic() < deadline, "the other process never heard of the logout"
            await asyncio.sleep(0.01)
        # Never started (or out of sync): every check goes to Redis.
        assert not cold.synced
        assert await cold.is_revoked(old) and not await cold.is_revoked(uuid.uuid4().hex)
        # A process that starts later loads what was revoked before it.
        cold.start()
        await _synced(cold)
        assert await cold.is_revoked(old)
        assert 0 < await redis.ttl(keys("auth", "revoked")) <= 960
    finally:
        for r in (here, there, cold):
            await r.close()
        for c in clients:
            await c.aclose()
        await redis.delete(keys("auth", "revoked"))


@pytest.fixture
def private_redis() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A port for a throwaway redis-server (no persistence) and the processes started on it."""
    assert shutil.which("redis-server") is not None
    procs: list[subprocess.Popen[bytes]] = []
    yield free_port(), procs
    for proc in procs:
        proc.kill()
        proc.wait()


async def _ping(url: str) -> None:
    async with Redis.from_url(url) as client:
        for _ in range(100):
            try:
                await client.ping()
                return
            except RedisError:
                await asyncio.sleep(0.05)
    raise AssertionError("redis-server did not start")


def _start_redis(port: int, procs: list[subprocess.Popen[bytes]]) -> None:
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    procs.append(
        subprocess.Popen(
            [*argv, "--appendonly", "no"], stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir()
        )
    )


async def test_a_process_syncs_again_after_its_redis_restarts(
    private_redis: tuple[int, list[subprocess.Popen[bytes]]],
) -> None:
    port, procs = private_redis
    _start_redis(port, procs)
    url = f"redis://127.0.0.1:{port}/0"
    await _ping(url)
    keys = Keys("rev")
    follower_client, writer_client = Redis.from_url(url), Redis.from_url(url)
    follower = RevocationList(follower_client, keys, horizon_s=900)
    writer = RevocationList(writer_client, keys, horizon_s=900)
    try:
        follower.start()
        await _synced(follower)
        procs[0].kill()
        procs[0].wait()
        deadline = time.monotonic() + 10
        while follower.synced:
            assert time.monotonic() < deadline, "a lost subscription went unnoticed"
            await asyncio.sleep(0.05)
        _start_redis(port, procs)
        await _ping(url)
        # Revoked while the follower is still out of sync: it asks Redis, then loads it.
        jti = uuid.uuid4().hex
        await writer.revoke(jti, time.time() + 600)
        assert await follower.is_revoked(jti)
        await _synced(follower, timeout=20)
        assert await follower.is_revoked(jti)
        later = uuid.uuid4().hex
        await writer.revoke(later, time.time() + 600)
        deadline = time.monotonic() + 2
        while not await follower.is_revoked(later):
            assert time.monotonic() < deadline, "the resynced process missed a logout"
            await asyncio.sleep(0.01)
    finally:
        await follower.close()
        await follower_client.aclose()
        await writer_client.aclose()


async def test_a_logged_out_token_is_refused_by_every_api_worker(
    live_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as api:
        tokens = await signup_and_login(api)
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await api.get("/users/me", headers=headers)).status_code == 200
        r = await api.post(
            "/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
        )
        assert r.status_code == 204
    # New connections each: uvicorn's two workers share the listening socket, so these land
    # on both of them.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10, limits=limits) as api:
        answers = await asyncio.gather(*(api.get("/users/me", headers=headers) for _ in range(40)))
    assert {a.status_code for a in answers} == {401}
    assert all("revoked" in a.json()["detail"] for a in answers)
