"""Chat fixtures: two real API processes on two ports sharing Redis (so every cross-process
claim is about a known pair of processes), real STOMP clients (stompjs on Node, stomp-py) and
rooms over real catalog rows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import stomp
import websockets
from stomp.adapter.ws import WSStompConnection
from websockets.typing import Subprotocol

from app.core.config import Settings
from app.core.security import issue_access_token
from app.devstack.broker import free_port, stop_process
from tests.catalog.test_catalog import make_concert
from tests.conftest import LiveServer
from tests.conftest import start_api as start_api_process
from tests.queue.conftest import bulk_fans

JS_DIR = Path(__file__).parent / "js"

# Small clocks so heart-beat, presence-expiry and slow-mode behaviour shows within seconds.
CHAT_ENV = {
    "TR_CHAT_PRESENCE_TTL_S": "3",
    "TR_CHAT_HEARTBEAT_SEND_MS": "500",
    "TR_CHAT_HEARTBEAT_RECEIVE_MS": "500",
    "TR_CHAT_SEND_LIMIT": "5",
    "TR_CHAT_SEND_WINDOW_S": "30",
    "TR_CHAT_HISTORY_ON_SUBSCRIBE": "5",
    "TR_CHAT_MAX_MESSAGE_BYTES": "200",
}


def start_api(settings: Settings, log_path: Path) -> LiveServer:
    """One API process (one uvicorn worker) on its own port, sharing DB and Redis prefix."""
    port = free_port()
    env = os.environ | {
        "TR_DATABASE_URL": settings.database_url,
        "TR_REDIS_URL": settings.redis_url,
        "TR_REDIS_PREFIX": settings.redis_prefix,
        "TR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TR_PAYMENTS_URL": settings.payments_url,
        "TR_API_PORT": str(port),
        "TR_API_WORKERS": "1",
        "TR_LOG_LEVEL": "WARNING",
        "TR_DB_POOL_SIZE": "2",
        "TR_DB_MAX_OVERFLOW": "2",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="tr-test-chat-metrics-"),
        **CHAT_ENV,
    }
    return start_api_process(env, log_path, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="session")
def chat_apis(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, LiveServer]]:
    logs = tmp_path_factory.mktemp("chat-api")
    a = start_api(settings, logs / "a.log")
    try:
        b = start_api(settings, logs / "b.log")
    except BaseException:
        stop_process(a.proc.pid)
        raise
    yield a, b
    for server in (a, b):
        stop_process(server.proc.pid)


def ws_url(server: LiveServer, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + "/ws/stomp" + (f"?{query}" if query else "")


@dataclass
class Room:
    name: str
    artist_room: str

    @property
    def destination(self) -> str:
        return "/topic/" + self.name


@pytest.fixture
async def room(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Room:
    """A fresh concert room (and its artist's room) over real catalog rows."""
    concert = await make_concert(client, admin_headers)
    return Room(f"concert.{concert['id']}", f"artist.{concert['artist']['id']}")


@dataclass
class User:
    user_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
async def users(app: Any, settings: Settings) -> Callable[[int], Any]:
    async def make(n: int) -> list[User]:
        fans = await bulk_fans(app.state.tr, settings, n)
        return [
            User(f.user_id, issue_access_token(settings, user_id=f.user_id, role="fan")[0])
            for f in fans
        ]

    return make


# stompjs (Node) -----------------------------------------------------------------------------


@dataclass
class JsClient:
    proc: asyncio.subprocess.Process
    log: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)

    async def op(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()

    async def next(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = 10,
    ) -> dict[str, Any]:
        """The next not-yet-returned event of `kind` matching `where`."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.pending):
                if event["type"] == kind and where(event):
                    return self.pending.pop(i)
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} event in {timeout} s; got {self.log}"
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=left)
            except TimeoutError:
                continue
            assert line, f"stompjs client ended; events {self.log}"
            event = json.loads(line)
            self.log.append(event)
            self.pending.append(event)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def stompjs() -> AsyncIterator[Callable[..., Any]]:
    started: list[JsClient] = []

    async def start(url: str, **options: Any) -> JsClient:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(JS_DIR / "client.mjs"),
            json.dumps({"url": url} | options),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        client = JsClient(proc)
        started.append(client)
        return client

    yield start
    for client in started:
        await client.close()


# stomp-py -----------------------------------------------------------------------------------


class Collector(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def on_connected(self, frame: Any) -> None:
        self.events.put(("connected", frame))

    def on_message(self, frame: Any) -> None:
        self.events.put(("message", frame))

    def on_error(self, frame: Any) -> None:
        self.events.put(("error", frame))

    def on_receipt(self, frame: Any) -> None:
        self.events.put(("receipt", frame))

    def on_disconnected(self) -> None:
        self.events.put(("disconnected", None))


@dataclass
class PyClient:
    conn: WSStompConnection
    collector: Collector
    backlog: list[tuple[str, Any]] = field(default_factory=list)

    def _next_sync(self, kind: str, where: Callable[[Any], bool], timeout: float) -> Any:
        for i, (k, frame) in enumerate(self.backlog):
            if k == kind and where(frame):
                return self.backlog.pop(i)[1]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} from stomp-py in {timeout} s; backlog {self.backlog}"
            try:
                k, frame = self.collector.events.get(timeout=left)
            except queue.Empty:
                continue
            if k == kind and where(frame):
                return frame
            self.backlog.append((k, frame))

    async def next(
        self, kind: str, where: Callable[[Any], bool] = lambda f: True, timeout: float = 10
    ) -> Any:
        return await asyncio.to_thread(self._next_sync, kind, where, timeout)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
async def stomppy() -> AsyncIterator[Callable[..., Any]]:
    started: list[PyClient] = []

    async def start(
        server: LiveServer, token: str | None, *, heartbeats: tuple[int, int] = (0, 0)
    ) -> PyClient:
        port = int(server.url.rsplit(":", 1)[1])
        conn = WSStompConnection(
            [("127.0.0.1", port)],
            ws_path="/ws/stomp",
            heartbeats=heartbeats,
            reconnect_attempts_max=1,
        )
        collector = Collector()
        conn.set_listener("collector", collector)
        await asyncio.to_thread(conn.connect, passcode=token, wait=False)
        client = PyClient(conn, collector)
        started.append(client)
        return client

    yield start
    for client in started:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(client.conn.disconnect)


# A raw WebSocket peer, for what real clients never send ------------------------------------


@dataclass
class RawPeer:
    """A WebSocket client that hands out one STOMP frame at a time (the server may put several
    in one WebSocket message)."""

    ws: Any
    pending: list[str] = field(default_factory=list)

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    async def send(self, data: str) -> None:
        await self.ws.send(data)

    async def recv(self) -> str:
        if self.pending:
            return self.pending.pop(0)
        data = await self.ws.recv()
        text = data if isinstance(data, str) else data.decode()
        if text == "\n":
            return text  # a heart-beat
        # Server frames carry no raw NUL (bodies are JSON or text/plain): split on it.
        frames = [f + "\x00" for f in text.split("\x00")[:-1]]
        assert frames and text.endswith("\x00"), text
        self.pending = frames[1:]
        return frames[0]


@asynccontextmanager
async def raw_stomp(url: str, subprotocols: list[str] | None = None) -> AsyncIterator[RawPeer]:
    async with websockets.connect(
        url,
        subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
        open_timeout=10,
    ) as ws:
        yield RawPeer(ws)


def connect_frame(token: str, heart_beat: str = "0,0") -> str:
    return f"CONNECT\naccept-version:1.2\nheart-beat:{heart_beat}\npasscode:{token}\n\n\x00"


async def recv_frame(peer: RawPeer, timeout: float = 5) -> str:
    return await asyncio.wait_for(peer.recv(), timeout=timeout)


def headers_of(frame: str) -> dict[str, str]:
    head = frame.split("\n\n", 1)[0].split("\n")[1:]
    return dict(line.split(":", 1) for line in head)
