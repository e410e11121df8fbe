"""Shared load-generator plumbing for the benchmarks: wrk runs, CPU accounting, /metrics scrapes.

The load comes from `wrk` (C, epoll, some 20 us of CPU per request where a Python API spends
hundreds) so that on a small machine the generator does not eat the cores the server is measured
on. A few wrk processes, started a little apart, each cycle through their own share of a list of
paths (so one path is never in flight twice) and write their figures and latency histogram as
JSON, merged here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

WRK_HINT = (
    "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`; "
    "the catalog benchmark uses it as its load generator"
)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Requests come from $LOADGEN_PATHS, one per line: a path (GET), or `METHOD PATH [TOKEN]` (a
# bearer token per request, so each line can be another fan). The summary and the whole latency
# histogram (microseconds, distinct values and their counts) go to $LOADGEN_OUT as JSON.
WRK_SCRIPT = r"""
function init(args)
  reqs = {}
  for line in io.lines(os.getenv("LOADGEN_PATHS")) do
    if line ~= "" then
      local method, path, token = line:match("^(%u+) (%S+) ?(%S*)$")
      if method == nil then method, path, token = "GET", line, "" end
      local headers = {}
      if token ~= "" then headers["Authorization"] = "Bearer " .. token end
      reqs[#reqs + 1] = wrk.format(method, path, headers)
    end
  end
  cursor = 0
end

function request()
  cursor = cursor + 1
  if cursor > #reqs then cursor = 1 end
  return reqs[cursor]
end

function done(summary, latency, per_thread)
  local e = summary.errors
  local out = io.open(os.getenv("LOADGEN_OUT"), "w")
  out:write(string.format(
    '{"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
  local values, counts = {}, {}
  for i = 1, #latency do
    local v, c = latency(i)
    values[i], counts[i] = string.format("%d", v), string.format("%d", c)
  end
  out:write('"latency_us": [', table.concat(values, ","), '], ')
  out:write('"latency_counts": [', table.concat(counts, ","), ']}')
  out:close()
end
"""


class LoadGenError(RuntimeError):
    """The load generator could not run (missing tool, failed run)."""


def require_wrk() -> str:
    """The wrk executable, or a LoadGenError that says how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise LoadGenError(WRK_HINT)
    return path


def wrk_version(executable: str) -> str:
    result = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, check=False, timeout=5
    )
    # `wrk -v` prints its banner and exits 1: "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) ...".
    first = (result.stdout or result.stderr).strip().splitlines()
    banner = first[0].split(" Copyright")[0].strip() if first else ""
    return banner or "wrk (unknown version)"


@dataclass(frozen=True, slots=True)
class WrkResult:
    duration_s: float  # wall time from the first wrk's start to the last one's exit
    requests: int
    bytes: int
    errors: dict[str, int]
    latency_ms: dict[str, float]
    wrk_cpu_s: float
    processes: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def percentiles(histogram: Mapping[int, int]) -> dict[str, float]:
    """min/mean/percentiles/max in ms of a {latency us: count} histogram."""
    total = sum(histogram.values())
    if not total:
        return {}
    values = sorted(histogram)
    out = {
        "min": values[0] / 1000,
        "mean": sum(v * c for v, c in histogram.items()) / total / 1000,
        "max": values[-1] / 1000,
    }
    wanted = [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)]
    seen = 0
    for value in values:
        seen += histogram[value]
        while wanted and seen >= total * wanted[0][1] / 100:
            out[wanted.pop(0)[0]] = value / 1000
    return out


def _prepare(tmp: Path, shares: list[list[str]]) -> tuple[Path, list[tuple[Path, Path]]]:
    script = tmp / "cycle.lua"
    script.write_text(WRK_SCRIPT)
    files = []
    for i, share in enumerate(shares):
        path_file = tmp / f"paths-{i}"
        path_file.write_text("\n".join(share) + "\n")
        files.append((path_file, tmp / f"out-{i}.json"))
    return script, files


def _read_summary(out: Path) -> dict[str, Any] | None:
    if not out.exists():
        return None
    raw: dict[str, Any] = json.loads(out.read_text())
    return raw


def _shares(paths: list[str], processes: int) -> list[list[str]]:
    # Disjoint shares, so one path is never in flight in two processes (a constant URL, fewer
    # paths than processes: everyone sends all of them).
    if len(paths) < processes:
        return [paths] * processes
    return [paths[i::processes] for i in range(processes)]


async def run_wrk(
    base_url: str,
    paths: list[str],
    *,
    duration_s: int,
    connections: int,
    processes: int = 4,
    stagger_s: float = 0.15,
    timeout_s: int = 10,
    probe: Callable[[], Awaitable[bool]] | None = None,
    probe_after_s: float = 0.5,
) -> WrkResult | None:
    """A closed-loop wrk run: `connections` keep-alive connections for `duration_s` seconds.

    The connections come from `processes` wrk processes started `stagger_s` apart, each cycling
    through its own share of `paths`: a burst of new connections tends to land on one server
    process when several share a listening socket, connections opened over time spread out.
    Latency histograms of all processes are merged.

    `probe`, if given, is awaited `probe_after_s` after the last process started; when it
    answers False the run is abandoned (wrk killed) and None returned, so the caller can start
    it again.
    """
    executable = require_wrk()
    processes = max(1, min(processes, connections))
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        script, files = _prepare(Path(tmp), _shares(paths, processes))
        # Only wrk processes are reaped while this runs: the children's rusage delta is theirs.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        procs: list[asyncio.subprocess.Process] = []
        waits: list[asyncio.Future[tuple[bytes, bytes]]] = []
        try:
            for i, (path_file, out) in enumerate(files):
                if i:
                    await asyncio.sleep(stagger_s)
                share = connections // processes + (1 if i < connections % processes else 0)
                argv = [executable, "-t1", f"-c{share}", f"-d{duration_s}s"]
                argv += [f"--timeout={timeout_s}s", "-s", str(script), base_url]
                env = {**os.environ, "LOADGEN_PATHS": str(path_file), "LOADGEN_OUT": str(out)}
                proc = await asyncio.create_subprocess_exec(
                    *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
                )
                procs.append(proc)
                waits.append(asyncio.ensure_future(proc.communicate()))
            if probe is not None:
                done, _ = await asyncio.wait(waits, timeout=probe_after_s)
                if len(done) < len(waits) and not await probe():
                    for proc in procs:
                        if proc.returncode is None:
                            proc.kill()
                    await asyncio.gather(*waits)
                    return None
            outputs = await asyncio.gather(*waits)
        except BaseException:  # cancelled (the caller was interrupted): no orphaned wrk
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
            raise
        elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        summaries = []
        for proc, (output, _), (_, out) in zip(procs, outputs, files, strict=True):
            raw = _read_summary(out) if proc.returncode == 0 else None
            if raw is None:
                raise LoadGenError(f"wrk failed (exit {proc.returncode}):\n{output.decode()}")
            summaries.append(raw)
    histogram: dict[int, int] = {}
    errors: dict[str, int] = {}
    for raw in summaries:
        for value, count in zip(raw["latency_us"], raw["latency_counts"], strict=True):
            histogram[value] = histogram.get(value, 0) + count
        for kind, count in raw["errors"].items():
            errors[kind] = errors.get(kind, 0) + int(count)
    return WrkResult(
        duration_s=elapsed,
        requests=sum(raw["requests"] for raw in summaries),
        bytes=sum(raw["bytes"] for raw in summaries),
        errors=errors,
        latency_ms=percentiles(histogram),
        wrk_cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        processes=processes,
    )


# --- CPU accounting ---------------------------------------------------------------------------


def machine_busy_s() -> tuple[float, float, float]:
    """(busy, total, irq) CPU seconds of the whole machine since boot, summed over all cores.

    `irq` (hard and soft interrupts, e.g. loopback TCP) is inside `busy` but charged to no
    process.
    """
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, _steal = fields[:8]
    total = sum(fields[:8])  # guest time is already inside user/nice
    # Steal (the hypervisor running someone else) is lost capacity, not work done here.
    busy = user + nice + system + irq + softirq
    return busy / _CLOCK_TICKS, total / _CLOCK_TICKS, (irq + softirq) / _CLOCK_TICKS


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    return stat.rpartition(")")[2].split()


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process, None once it is gone."""
    fields = _stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def parent_pid(pid: int) -> int | None:
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def tree_snapshot(root: int) -> tuple[float, dict[int, float]]:
    """(CPU of `root` plus its reaped children, {live child: its CPU}).

    Between two snapshots a tree of short-lived children (PostgreSQL's backends, forked and
    reaped by the postmaster) used: the first element's growth, plus the live children at the
    end, minus the live children at the start.
    """
    fields = _stat(root)
    if fields is None:
        return 0.0, {}
    own = sum(int(v) for v in fields[11:15]) / _CLOCK_TICKS  # utime stime cutime cstime
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (child := _stat(int(entry))) is not None and child[1] == str(root):
            children[int(entry)] = (int(child[11]) + int(child[12])) / _CLOCK_TICKS
    return own, children


def descendants(root: int) -> list[int]:
    """`root` and every process below it (from each process's parent pid)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


@dataclass
class CpuMeter:
    """CPU seconds used between `start()` and `stop()`: the machine, and named process groups."""

    groups: Mapping[str, list[int]]
    trees: Mapping[str, int] = field(default_factory=dict)  # name -> root pid, see tree_snapshot
    _trees: dict[str, tuple[float, dict[int, float]]] = field(default_factory=dict)
    _busy: float = 0.0
    _wall: float = 0.0
    _irq: float = 0.0
    _self: float = 0.0
    _per_pid: dict[int, float] = field(default_factory=dict)
    result: dict[str, float] = field(default_factory=dict)
    per_pid: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self._busy, self._wall, self._irq = machine_busy_s()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._self = usage.ru_utime + usage.ru_stime
        self._per_pid = {
            pid: cpu
            for pids in self.groups.values()
            for pid in pids
            if (cpu := process_cpu_s(pid)) is not None
        }
        self._trees = {name: tree_snapshot(root) for name, root in self.trees.items()}

    def stop(self) -> dict[str, float]:
        busy, wall, irq = machine_busy_s()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.per_pid = {}
        for pid, before in self._per_pid.items():
            after = process_cpu_s(pid)
            self.per_pid[pid] = (after - before) if after is not None else 0.0
        self.result = {
            name: sum(self.per_pid.get(pid, 0.0) for pid in pids)
            for name, pids in self.groups.items()
        }
        for name, root in self.trees.items():
            own, children = tree_snapshot(root)
            own_before, children_before = self._trees[name]
            used = own - own_before + sum(children.values()) - sum(children_before.values())
            self.result[name] = max(used, 0.0)
        self.result["bench_process"] = usage.ru_utime + usage.ru_stime - self._self
        self.result["kernel_irq"] = irq - self._irq
        self.result["machine_busy"] = busy - self._busy
        self.result["machine_capacity"] = wall - self._wall
        return self.result


def established_connections(pids: Iterable[int], port: int) -> dict[int, int]:
    """How many established TCP connections to local `port` each process holds."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh)  # header
            for line in fh:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "01" and int(local.rpartition(":")[2], 16) == port:
                    inodes.add(inode)
    counts = {}
    for pid in pids:
        held = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        held += 1
        counts[pid] = held
    return counts


# --- Prometheus scrape ------------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient, url: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (name, sorted labels)."""
    response = await client.get(url)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample_delta(
    before: Samples, after: Samples, name: str, **labels: str
) -> dict[tuple[tuple[str, str], ...], float]:
    """Per label set: how much a counter grew, for samples matching `labels`."""
    wanted = set(labels.items())
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for (sample_name, sample_labels), value in after.items():
        if sample_name == name and wanted <= set(sample_labels):
            out[sample_labels] = value - before.get((sample_name, sample_labels), 0.0)
    return out


# --- machine ----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def machine_info() -> dict[str, str | int]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --- open loop ---------------------------------------------------------------------------------

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(
        self, done: Callable[[_Connection, float, int], None], gone: Callable[[_Connection], None]
    ) -> None:
        self.done = done
        self.gone = gone
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.scheduled = 0.0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes, scheduled: float) -> None:
        assert self.transport is not None
        self.scheduled = scheduled
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        match = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
        size = int(match[1]) if match else 0
        if len(self.buffer) < end + 4 + size:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: end + 4 + size]
        self.done(self, self.scheduled, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.scheduled:
            self.done(self, self.scheduled, 0)
        else:
            self.gone(self)


@dataclass
class OpenLoopResult:
    rate: float
    achieved_rate: float
    requests: int
    statuses: dict[int, int]
    latency_ms: dict[str, float]
    connections: int
    client_cpu_cores: float


async def open_loop(
    host: str, port: int, requests: list[bytes], *, rate: float, seconds: float
) -> OpenLoopResult:
    """Send `requests` (raw HTTP/1.1, cycled) at a fixed rate whatever the answers take, and
    time each answer from when it was due, so a slow server is charged for the queue it causes
    (no coordinated omission). A request due while every connection is busy opens another one.

    Hand-written on asyncio's protocol layer because the generator shares the machine's cores
    with the server it measures: aiohttp spent ~0.47 of a core at 1,500 requests/s here, this
    a fraction of that (the figure is in the result)."""
    loop = asyncio.get_running_loop()
    idle: list[_Connection] = []
    histogram: dict[int, int] = {}
    statuses: dict[int, int] = {}
    opened = 0
    finished = asyncio.Event()
    n = int(rate * seconds)
    answered = 0

    def done(conn: _Connection, scheduled: float, status: int) -> None:
        nonlocal answered
        us = int((time.perf_counter() - scheduled) * 1e6)
        histogram[us] = histogram.get(us, 0) + 1
        statuses[status] = statuses.get(status, 0) + 1
        conn.scheduled = 0.0
        if conn.transport is not None and not conn.lost:
            idle.append(conn)
        answered += 1
        if answered == n:
            finished.set()

    def gone(conn: _Connection) -> None:  # an idle connection the server closed
        with contextlib.suppress(ValueError):
            idle.remove(conn)

    async def dispatch(request: bytes, scheduled: float) -> None:
        nonlocal opened
        opened += 1
        try:
            _, conn = await loop.create_connection(lambda: _Connection(done, gone), host, port)
        except OSError:
            done(_Connection(done, gone), scheduled, 0)
            return
        conn.send(request, scheduled)

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    for i in range(n):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0.001:
            await asyncio.sleep(wait)
        request = requests[i % len(requests)]
        # From when it was due, or from now when sent a little early (the sleep's granularity).
        due = min(due, time.perf_counter())
        if idle:
            idle.pop().send(request, due)
        else:
            task = asyncio.create_task(dispatch(request, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
    await asyncio.wait_for(finished.wait(), timeout=seconds + 60)
    elapsed = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for conn in idle:
        assert conn.transport is not None
        conn.transport.close()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return OpenLoopResult(
        rate=rate,
        achieved_rate=n / elapsed,
        requests=n,
        statuses=statuses,
        latency_ms=percentiles(histogram),
        connections=opened,
        client_cpu_cores=cpu / elapsed,
    )


def http_get(host: str, path: str, headers: Mapping[str, str] | None = None) -> bytes:
    """A raw HTTP/1.1 keep-alive GET for `open_loop`."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
