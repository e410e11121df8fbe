"""Streaming fixtures: the real API (2 uvicorn workers) with streaming settings, a real
nginx-rtmp pointed at it, ffmpeg publishers, and channels over real artists."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.devstack.broker import free_port, stop_process
from app.streaming.ingest import Ingest, IngestConfig, start_ingest
from tests.conftest import LiveServer, start_api

# nginx's update period (and so the staleness of a silent session: 3 updates) and the viewer
# window, short so the tests run in seconds.
UPDATE_INTERVAL_S = 1
VIEWER_WINDOW_S = 3


@dataclass(frozen=True)
class StreamingEnv:
    secret: str
    api_port: int
    rtmp_port: int
    http_port: int
    run_dir: Path

    @property
    def hls_dir(self) -> Path:
        return self.run_dir / "hls"

    @property
    def hls_base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/hls"

    @property
    def ingest_url(self) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


@pytest.fixture(scope="session")
def streaming_env(tmp_path_factory: pytest.TempPathFactory) -> StreamingEnv:
    return StreamingEnv(
        secret=secrets.token_urlsafe(24),
        api_port=free_port(),
        rtmp_port=free_port(),
        http_port=free_port(),
        run_dir=tmp_path_factory.mktemp("nginx-rtmp"),
    )


@pytest.fixture(scope="session")
def streaming_api(
    settings: Settings, streaming_env: StreamingEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    env = {
        **os.environ,
        "TR_DATABASE_URL": settings.database_url,
        "TR_REDIS_URL": settings.redis_url,
        "TR_REDIS_PREFIX": settings.redis_prefix,
        "TR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TR_PAYMENTS_URL": settings.payments_url,
        "TR_API_PORT": str(streaming_env.api_port),
        "TR_API_WORKERS": "2",
        "TR_LOG_LEVEL": "INFO",
        "TR_DB_POOL_SIZE": "3",
        "TR_DB_MAX_OVERFLOW": "3",
        "TR_LOGIN_LIMIT_PER_ACCOUNT": "1000",
        "TR_LOGIN_LIMIT_PER_IP": "10000",
        "TR_SIGNUP_LIMIT_PER_IP": "10000",
        "TR_STREAMING_CALLBACK_SECRET": streaming_env.secret,
        "TR_STREAMING_HLS_BASE_URL": streaming_env.hls_base_url,
        "TR_STREAMING_INGEST_URL": streaming_env.ingest_url,
        "TR_STREAMING_UPDATE_INTERVAL_S": str(UPDATE_INTERVAL_S),
        "TR_STREAMING_VIEWER_WINDOW_S": str(VIEWER_WINDOW_S),
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="tr-test-streaming-metrics-"),
    }
    log_path = tmp_path_factory.mktemp("streaming-api") / "api.log"
    server = start_api(env, log_path, streaming_env.api_url)
    yield server
    stop_process(server.proc.pid)


@pytest.fixture(scope="session")
def ingest(streaming_env: StreamingEnv, streaming_api: LiveServer) -> Iterator[Ingest]:
    """nginx with the RTMP module, rendered from the repository's template."""
    nginx = start_ingest(
        IngestConfig(
            run_dir=streaming_env.run_dir,
            hls_dir=streaming_env.hls_dir,
            rtmp_port=streaming_env.rtmp_port,
            http_port=streaming_env.http_port,
            callback_url=f"{streaming_api.url}/rtmp",
            callback_secret=streaming_env.secret,
            update_interval_s=UPDATE_INTERVAL_S,
            hls_fragment_s=1,
            hls_playlist_length_s=4,
        )
    )
    yield nginx
    nginx.stop()


@pytest.fixture
async def api(streaming_api: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=streaming_api.url, timeout=10) as client:
        yield client


async def new_artist(api: httpx.AsyncClient, admin: dict[str, str]) -> int:
    tag = uuid.uuid4().hex[:10]
    r = await api.post("/agencies", json={"name": f"Agency {tag}"}, headers=admin)
    assert r.status_code == 201, r.text
    r = await api.post(
        "/artists", json={"agency_id": r.json()["id"], "name": f"Artist {tag}"}, headers=admin
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def new_channel(
    api: httpx.AsyncClient, admin: dict[str, str], *, artist_id: int | None = None
) -> dict[str, Any]:
    """A fresh channel (over a fresh artist unless given); the answer carries `stream_key`."""
    artist_id = artist_id or await new_artist(api, admin)
    r = await api.post(
        "/channels", json={"artist_id": artist_id, "title": "Comeback showcase"}, headers=admin
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10, pause: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(pause)


async def channel_state(api: httpx.AsyncClient, channel_id: int) -> dict[str, Any]:
    r = await api.get(f"/channels/{channel_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def publish(
    ingest: Ingest, key: str, *, seconds: float, url: str | None = None
) -> subprocess.Popen[bytes]:
    """ffmpeg publishing a test pattern in real time (1 s GOP, so 1 s HLS fragments) to
    `<url>/<key>` (the ingest application by default)."""
    return subprocess.Popen(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=15",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "15",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "flv",
            f"{url or ingest.config.rtmp_url}/{key}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError("ffmpeg did not finish in time")
        await asyncio.sleep(0.05)
    return proc.returncode
