"""The booking benchmark's load driver: closed-loop HTTP/1.1 clients in several OS processes.

Each driver process runs its own uvloop event loop with a share of the keep-alive connections
and talks to the coordinator (the benchmark script) over a pipe. The work is a list of *rounds*;
a round is a list of requests that start together (every connection takes the next request of
its process's share as soon as its previous one is answered) and ends when the last one is
answered, so "1,000 clients race for one seat" is one round of 1,000 requests over 1,000
connections, all in flight at once. Requests are encoded before the clock starts; responses are
parsed with httptools (llhttp, the parser uvicorn itself uses) and reduced in the driver process
to what the benchmark needs: status, latency, the booking id of a 201, the request id of a 202,
the problem type of a 409 and whether its detail says the database caught it.

A request that gets no response (timeout, connection reset) is *unanswered*: it is never sent
again, since a booking request is not idempotent without a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import httptools
import uvloop

# The 409 detail the booking strategies give when only a database constraint stopped a sale.
DB_CAUGHT_SUFFIX = "(caught by the database)."
# uvicorn closes a keep-alive connection after 5 s without a request: reopen ours before that.
KEEPALIVE_IDLE_S = 4.0
MAX_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class RoundSpec:
    """Requests of one round: the same method and path, one (token index, body) per request.

    Token index -1 sends no Authorization header; an empty body sends no Content-Length."""

    method: str
    path: str
    calls: Sequence[tuple[int, bytes]]

    def share(self, index: int, of: int) -> RoundSpec:
        return RoundSpec(self.method, self.path, self.calls[index::of])


@dataclass(slots=True)
class RoundResult:
    """What the driver saw in one round (one driver process, or all of them merged)."""

    started: float = float("inf")  # time.monotonic(): one clock for every process on Linux
    finished: float = 0.0
    cpu_s: float = 0.0
    statuses: list[int] = field(default_factory=list)  # 0 = no response
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests only
    booking_ids: list[int] = field(default_factory=list)  # from 201 responses
    request_ids: list[str] = field(default_factory=list)  # from 202 responses
    conflicts: Counter[str] = field(default_factory=Counter)  # 409 problem type slug -> count
    db_caught: int = 0  # 409s whose detail ends with DB_CAUGHT_SUFFIX
    samples: list[str] = field(default_factory=list)  # bodies of unexpected answers
    reconnects: int = 0

    @property
    def duration_s(self) -> float:
        return max(self.finished - self.started, 0.0)

    def merge(self, other: RoundResult) -> None:
        self.started = min(self.started, other.started)
        self.finished = max(self.finished, other.finished)
        self.cpu_s += other.cpu_s
        self.statuses += other.statuses
        self.latencies += other.latencies
        self.booking_ids += other.booking_ids
        self.request_ids += other.request_ids
        self.conflicts.update(other.conflicts)
        self.db_caught += other.db_caught
        self.samples += other.samples[: max(MAX_SAMPLES - len(self.samples), 0)]
        self.reconnects += other.reconnects


# --- driver process ---------------------------------------------------------------------------


class _Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.closed = False
        self.last_used = time.monotonic()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        body = b"".join(self.body)
        self.body = []
        if not self.parser.should_keep_alive():
            self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await self.waiter
        finally:
            self.waiter = None
            self.last_used = time.monotonic()


class _Worker:
    """The state of one driver process: connections, tokens and encoded rounds."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.tokens: list[str] = []
        self.rounds: list[list[bytes]] = []
        self.clients: list[_Client] = []

    def encode(self, spec: RoundSpec) -> list[bytes]:
        head = f"{spec.method} {spec.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        out = []
        for token, body in spec.calls:
            parts = [head]
            if token >= 0:
                parts.append(f"Authorization: Bearer {self.tokens[token]}\r\n")
            if body:
                parts.append(f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
            parts.append("\r\n")
            out.append("".join(parts).encode() + body)
        return out

    async def open(self) -> _Client:
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_connection(_Client, self.host, self.port)
        # uvloop may call connection_made only on the next loop iteration.
        client.transport = transport
        return client

    async def connect(self, n: int) -> int:
        for client in self.clients:
            client.close()
        # One at a time: each accept then sees one pending connection, so uvicorn's workers
        # (sharing one listening socket) split them about evenly instead of in bursts.
        self.clients = [await self.open() for _ in range(n)]
        return len(self.clients)

    async def run(self, index: int, timeout_s: float) -> RoundResult:
        requests = self.rounds[index]
        result = RoundResult()
        statuses = [0] * len(requests)
        cursor = 0
        before = resource.getrusage(resource.RUSAGE_SELF)

        async def drive(slot: int) -> None:
            nonlocal cursor
            while cursor < len(requests):
                i = cursor
                cursor += 1
                client = self.clients[slot]
                if client.closed or time.monotonic() - client.last_used > KEEPALIVE_IDLE_S:
                    client.close()
                    client = self.clients[slot] = await self.open()
                    result.reconnects += 1
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout_s):
                        status, body = await client.request(requests[i])
                except (TimeoutError, OSError, httptools.HttpParserError) as exc:
                    client.close()
                    if len(result.samples) < MAX_SAMPLES:
                        result.samples.append(f"no response: {exc!r}")
                    continue
                result.latencies.append(time.perf_counter() - started)
                statuses[i] = status
                _digest(status, body, result)
                if status >= 500:
                    # uvicorn closes the connection after an unhandled exception (500) without
                    # saying so: a request sent on it right away would be reset unanswered.
                    client.close()

        result.started = time.monotonic()
        await asyncio.gather(*(drive(slot) for slot in range(len(self.clients))))
        result.finished = time.monotonic()
        after = resource.getrusage(resource.RUSAGE_SELF)
        result.cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        result.statuses = statuses
        return result


def _digest(status: int, body: bytes, result: RoundResult) -> None:
    """Keep only what the benchmark needs from an answer."""
    if status == 200:
        return  # the no-op endpoint (no booking replays: no Idempotency-Key is sent)
    try:
        doc: Any = json.loads(body) if body else {}
    except ValueError:
        doc = None
    if status == 201 and isinstance(doc, dict) and isinstance(doc.get("id"), int):
        result.booking_ids.append(doc["id"])
    elif status == 202 and isinstance(doc, dict) and isinstance(doc.get("request_id"), str):
        result.request_ids.append(doc["request_id"])
    elif status == 409 and isinstance(doc, dict):
        result.conflicts[str(doc.get("type", "")).rsplit("/", 1)[-1] or "unknown"] += 1
        if str(doc.get("detail") or "").endswith(DB_CAUGHT_SUFFIX):
            result.db_caught += 1
    elif len(result.samples) < MAX_SAMPLES:
        result.samples.append(f"{status}: {body[:300].decode(errors='replace')}")


def _serve(conn: Connection, host: str, port: int) -> None:
    """Driver process main loop: one command from the coordinator at a time."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = _Worker(host, port)
    try:
        while True:
            command, *args = conn.recv()
            reply: object
            if command == "tokens":
                worker.tokens = args[0]
                reply = len(worker.tokens)
            elif command == "load":
                worker.rounds = [worker.encode(spec) for spec in args[0]]
                reply = len(worker.rounds)
            elif command == "connect":
                reply = loop.run_until_complete(worker.connect(args[0]))
            elif command == "run":
                reply = loop.run_until_complete(worker.run(args[0], args[1]))
            elif command == "close":
                for client in worker.clients:
                    client.close()
                loop.run_until_complete(asyncio.sleep(0))
                conn.send(None)
                return
            else:
                reply = RuntimeError(f"unknown command {command!r}")
            conn.send(reply)
    finally:
        loop.close()


# --- coordinator ------------------------------------------------------------------------------


class LoadDriver:
    """`processes` driver processes holding `connections` keep-alive connections in total."""

    def __init__(
        self, *, host: str, port: int, processes: int, connections: int, timeout_s: float
    ) -> None:
        if connections < processes:
            raise ValueError("need at least one connection per driver process")
        self.host, self.port = host, port
        self.processes, self.connections, self.timeout_s = processes, connections, timeout_s
        self._pipes: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no inherited event loop or sockets
        for _ in range(self.processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, self.host, self.port), daemon=True)
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    async def _call(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        for pipe, command in zip(self._pipes, commands, strict=True):
            pipe.send(command)
        replies = await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self._pipes))
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    async def set_tokens(self, tokens: list[str]) -> None:
        await self._call([("tokens", tokens)] * self.processes)

    async def load(self, rounds: Sequence[RoundSpec]) -> None:
        await self._call(
            [("load", [r.share(i, self.processes) for r in rounds]) for i in range(self.processes)]
        )

    async def connect(self) -> None:
        n = self.connections
        shares = [
            n // self.processes + (1 if i < n % self.processes else 0)
            for i in range(self.processes)
        ]
        await self._call([("connect", shares[i]) for i in range(self.processes)])

    async def run(self, index: int) -> RoundResult:
        merged = RoundResult()
        for part in await self._call([("run", index, self.timeout_s)] * self.processes):
            merged.merge(part)
        return merged

    async def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            await self._call([("close",)] * self.processes)
        for proc in self._procs:
            await asyncio.to_thread(proc.join, 5)
            if proc.is_alive():
                proc.kill()
        self._procs, self._pipes = [], []


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(int(-(-q * len(sorted_values) // 100)), 1)  # ceil(q/100 * n), at least 1
    return sorted_values[min(rank, len(sorted_values)) - 1]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))
