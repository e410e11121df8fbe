"""`ticket-rush stack up|down|status`: backing services and app processes under the run dir.

`up` reuses the machine's shared PostgreSQL/Redis when they answer and starts private ones
otherwise; the Tansu broker is always ours. `stack.json` records what this stack started, so
`down` stops exactly that and never a shared service.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import glob
import http.client
import json
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.config import PROJECT_ROOT, Settings
from app.devstack import StackError
from app.devstack.broker import (
    ensure_topics,
    free_port,
    port_open,
    process_alive,
    spawn,
    start_broker,
    stop_process,
    wait_broker_ready,
    wait_gone,
)

# Processes of `up --with-app`, started in this order and stopped in reverse; the booking
# consumer runs `stack_booking_consumers` times (members of one group), see `app_processes`.
APP_PROCESSES: dict[str, list[str]] = {
    "payments-sim": [sys.executable, "-m", "app.payments_sim"],
    "api": [sys.executable, "-m", "app.api"],
    "api-checkout": [sys.executable, "-m", "app.api"],
    "admission": [sys.executable, "-m", "app.admission"],
    "booking-consumer": [sys.executable, "-m", "app.booking_consumer"],
}
MIGRATE_ARGV = [sys.executable, "-m", "app.cli", "migrate"]
API_HEALTH_TIMEOUT_S = 30.0
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# Stop order of `down`: app processes first, then what they depend on.
_BACKING_STOP_ORDER = ("broker", "redis", "postgres")


@dataclass
class Component:
    name: str
    kind: str  # "shared" (the machine's, never stopped), "private" or "app" (started by us)
    address: str  # host:port
    url: str
    pid: int | None = None


@dataclass(frozen=True)
class ComponentStatus:
    component: Component
    alive: bool | None  # None: a shared service, not ours to watch
    health: str | None  # "ok", an error text, or None when there is no probe

    @property
    def ok(self) -> bool:
        return self.alive is not False and self.health in ("ok", None)


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "stack.json"

    @property
    def env(self) -> Path:
        return self.root / "stack.env"

    @property
    def jwt_secret(self) -> Path:
        return self.root / "jwt_secret"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pg(self) -> Path:
        return self.root / "pg"

    @property
    def redis(self) -> Path:
        return self.root / "redis"


# --- small helpers --------------------------------------------------------------------------


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    content = path.read_text(errors="replace").splitlines()[-lines:]
    return f"last {len(content)} lines of {path}:\n" + "\n".join(content)


def _write_private(path: Path, content: str) -> None:
    # 0600: the files carry the JWT secret and database credentials.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(content)
    tmp.replace(path)


@contextlib.contextmanager
def _locked(paths: RunPaths) -> Iterator[None]:
    # Two concurrent `up`s would otherwise both start a broker.
    paths.logs.mkdir(parents=True, exist_ok=True)
    with (paths.root / "stack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load_state(paths: RunPaths) -> dict[str, Component]:
    if not paths.state.exists():
        return {}
    raw = json.loads(paths.state.read_text())
    return {c["name"]: Component(**c) for c in raw["components"]}


def _save_state(paths: RunPaths, components: dict[str, Component]) -> None:
    body = {"components": [asdict(c) for c in components.values()]}
    _write_private(paths.state, json.dumps(body, indent=2) + "\n")


def _live_pid(component: Component | None, kind: str) -> int | None:
    """The pid of a recorded process of this kind that still runs."""
    if component is None or component.kind != kind or component.pid is None:
        return None
    return component.pid if process_alive(component.pid) else None


def _port(component: Component) -> int:
    return int(component.address.rpartition(":")[2])


def load_stack_env(run_dir: Path) -> dict[str, str]:
    """The `KEY=VALUE` pairs of `<run_dir>/stack.env` written by `stack up`."""
    path = RunPaths(run_dir).env
    if not path.exists():
        raise StackError(f"{path} does not exist: run `ticket-rush stack up` first")
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


# --- PostgreSQL -------------------------------------------------------------------------------


def _pg_url(url: URL, port: int) -> str:
    return url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def _pg_bin_dir() -> Path:
    candidates = sorted(
        (Path(d) for d in glob.glob(PG_BIN_GLOB) if Path(d, "initdb").exists()),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,  # newest major last
    )
    if not candidates:
        raise StackError(
            f"no PostgreSQL server binaries in {PG_BIN_GLOB} and nothing answers "
            "on the TR_DATABASE_URL address: `apt-get install postgresql` or start a server"
        )
    return candidates[-1]


def _pg_os_user() -> str | None:
    # initdb and postgres refuse to run as root; run them as the `postgres` account then.
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("running as root needs a `postgres` OS user for the cluster") from None
    return "postgres"


def _run(argv: list[str], *, user: str | None, what: str, log: Path | None = None) -> None:
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        argv, user=user, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        details = f"\n{_tail(log)}" if log else ""
        raise StackError(f"{what} failed (exit {result.returncode}): {output}{details}")


def _start_private_postgres(url: URL, paths: RunPaths) -> Component:
    bin_dir = _pg_bin_dir()
    user = _pg_os_user()
    data, sockets, log = paths.pg / "data", paths.pg / "sockets", paths.logs / "postgres.log"
    sockets.mkdir(parents=True, exist_ok=True)
    log.touch()
    if user:
        for path in (paths.pg, sockets, log):
            shutil.chown(path, user=user)
    if not (data / "PG_VERSION").exists():
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-E", "UTF8"]
        _run([*initdb, "-U", url.username or "postgres"], user=user, what="initdb")
    port = free_port()
    options = shlex.join(["-p", str(port), "-k", str(sockets), "-c", "listen_addresses=127.0.0.1"])
    pg_ctl = [str(bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data), "-l", str(log)]
    _run([*pg_ctl, "-o", options], user=user, what="pg_ctl start", log=log)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    return Component("postgres", "private", f"127.0.0.1:{port}", _pg_url(url, port), pid)


def _stop_private_postgres(paths: RunPaths, pid: int) -> None:
    # pg_ctl's fast shutdown, not a signal to the process group: that would hit every backend.
    pg_ctl = [
        str(_pg_bin_dir() / "pg_ctl"),
        "stop",
        "-w",
        "-m",
        "fast",
        "-D",
        str(paths.pg / "data"),
    ]
    _run(pg_ctl, user=_pg_os_user(), what="pg_ctl stop")
    # pg_ctl returns once the pid file is gone; the postmaster exits a moment later.
    if not wait_gone(pid, 10):
        raise StackError(f"postgres (pid {pid}) still runs after pg_ctl stop")


async def _probe_postgres(component: Component) -> None:
    engine = create_async_engine(component.url, poolclass=NullPool, connect_args={"timeout": 5})
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def _ensure_database(url: URL) -> None:
    if not url.database:
        return
    engine = create_async_engine(
        url.set(database="postgres"),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",  # CREATE DATABASE cannot run in a transaction
        connect_args={"timeout": 5},
    )
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if found is None:
                quoted = conn.dialect.identifier_preparer.quote(url.database)
                await conn.execute(text(f"CREATE DATABASE {quoted}"))
    except (SQLAlchemyError, OSError) as exc:
        raise StackError(
            f"PostgreSQL at {url.host}:{url.port}: cannot ensure database {url.database!r}: {exc}"
        ) from exc
    finally:
        await engine.dispose()


async def _ensure_postgres(
    settings: Settings, paths: RunPaths, previous: Component | None
) -> Component:
    url = make_url(settings.database_url)
    host, port = url.host or "127.0.0.1", url.port or 5432
    if previous is not None and _live_pid(previous, "private"):
        component = replace(previous, url=_pg_url(url, _port(previous)))
    elif await port_open(host, port):
        component = Component("postgres", "shared", f"{host}:{port}", settings.database_url)
    else:
        component = await asyncio.to_thread(_start_private_postgres, url, paths)
    await _ensure_database(make_url(component.url))
    return component


# --- Redis ------------------------------------------------------------------------------------


def _redis_url(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc}" if userinfo else netloc))


async def _probe_redis(component: Component) -> None:
    client = Redis.from_url(component.url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _start_private_redis(url: str, paths: RunPaths) -> Component:
    server = shutil.which("redis-server")
    if server is None:
        raise StackError("nothing answers on TR_REDIS_URL and `redis-server` is not installed")
    paths.redis.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), paths.logs / "redis.log"
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(paths.redis)]
    argv += ["--pidfile", str(paths.redis / "redis.pid"), "--logfile", str(log)]
    if password := urlsplit(url).password:
        argv += ["--requirepass", password]
    proc = spawn(argv, log)
    component = Component("redis", "private", f"127.0.0.1:{port}", _redis_url(url, port), proc.pid)
    deadline = time.monotonic() + 10
    while await _health(_probe_redis(component)) != "ok":
        if proc.poll() is not None or time.monotonic() >= deadline:
            await asyncio.to_thread(stop_process, proc.pid)
            raise StackError(f"private redis-server did not come up\n{_tail(log)}")
        await asyncio.sleep(0.05)
    return component


async def _ensure_redis(
    settings: Settings, paths: RunPaths, previous: Component | None
) -> Component:
    parts = urlsplit(settings.redis_url)
    address = f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
    if previous is not None and _live_pid(previous, "private"):
        return replace(previous, url=_redis_url(settings.redis_url, _port(previous)))
    shared = Component("redis", "shared", address, settings.redis_url)
    if await _health(_probe_redis(shared)) == "ok":
        return shared
    return await _start_private_redis(settings.redis_url, paths)


# --- broker -----------------------------------------------------------------------------------


async def _probe_broker(component: Component) -> None:
    await wait_broker_ready(component.address, timeout=2)


async def _ensure_broker(
    settings: Settings, paths: RunPaths, previous: Component | None
) -> Component:
    component = None
    if previous is not None and (pid := _live_pid(previous, "private")):
        if await _health(_probe_broker(previous)) == "ok":
            component = previous
        else:  # our process, but wedged: replace it
            await asyncio.to_thread(stop_process, pid)
    if component is None:
        port, log = free_port(), paths.logs / "broker.log"
        proc = start_broker(port, log)
        address = f"127.0.0.1:{port}"
        component = Component("broker", "private", address, address, proc.pid)
        try:
            await wait_broker_ready(address)
        except StackError as exc:
            await asyncio.to_thread(stop_process, proc.pid)
            raise StackError(f"{exc}\n{_tail(log)}") from exc
    await ensure_topics(component.address, settings.kafka_topics)
    return component


# --- app processes ----------------------------------------------------------------------------


def _http_status(host: str, port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


async def _probe_api(component: Component) -> None:
    host, _, port = component.address.rpartition(":")
    status = await asyncio.to_thread(_http_status, host, int(port), "/healthz")
    if status != 200:
        raise StackError(f"GET /healthz answered {status or 'nothing'}")


def _migrate(env: dict[str, str], paths: RunPaths) -> None:
    log = paths.logs / "migrate.log"
    with log.open("wb") as out:
        returncode = subprocess.run(  # noqa: S603 - fixed argv, no shell
            MIGRATE_ARGV,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=False,
        ).returncode
    if returncode != 0:
        command = shlex.join(MIGRATE_ARGV[1:])
        raise StackError(f"`{command}` failed (exit {returncode})\n{_tail(log)}")


async def _wait_http_healthy(
    component: Component, proc: subprocess.Popen[bytes], log: Path
) -> None:
    name = component.name
    deadline = time.monotonic() + API_HEALTH_TIMEOUT_S
    while (health := await _health(_probe_api(component))) != "ok":
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode}\n{_tail(log)}")
        if time.monotonic() >= deadline:
            raise StackError(
                f"{name} not healthy after {API_HEALTH_TIMEOUT_S:g} s ({health})\n{_tail(log)}"
            )
        await asyncio.sleep(0.2)


def _http_ports(settings: Settings) -> dict[str, tuple[int, str]]:
    """App processes that serve HTTP with /healthz: their port and the variable that sets it."""
    return {
        "api": (settings.api_port, "TR_API_PORT"),
        "api-checkout": (settings.api_checkout_port, "TR_API_CHECKOUT_PORT"),
        "payments-sim": (settings.payments_port, "TR_PAYMENTS_PORT"),
    }


async def _start_apps(
    settings: Settings,
    paths: RunPaths,
    components: dict[str, Component],
    env: dict[str, str],
    console: Console,
) -> None:
    child_env = {**os.environ, **env}
    console.print("migrating the database")
    await asyncio.to_thread(_migrate, child_env, paths)
    for name, (argv, extra) in app_processes(settings).items():
        if _live_pid(components.get(name), "app"):
            console.print(f"{name}: already running")
            continue
        address, url = "-", ""
        http = _http_ports(settings).get(name)
        if http is not None:
            port, variable = http
            if await port_open("127.0.0.1", port):
                raise StackError(f"port {port} ({name}) is taken: free it or set {variable}")
            address = f"127.0.0.1:{port}"
            url = f"http://{address}"
        log = paths.logs / f"{name}.log"
        proc = spawn(argv, log, env={**child_env, **extra}, cwd=PROJECT_ROOT)
        components[name] = Component(name, "app", address, url, proc.pid)
        _save_state(paths, components)
        if http is not None:
            try:
                await _wait_http_healthy(components[name], proc, log)
            except StackError:
                await asyncio.to_thread(stop_process, proc.pid)
                del components[name]
                _save_state(paths, components)
                raise
        console.print(f"{name}: started, pid {proc.pid}, log {log}")


# --- up / down / status -----------------------------------------------------------------------


def _secret(path: Path) -> str:
    # Generated once, so tokens (and nginx's callbacks) stay valid across `down`/`up`.
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_hex(32)
    _write_private(path, secret + "\n")
    return secret


def _jwt_secret(paths: RunPaths) -> str:
    return _secret(paths.jwt_secret)


async def _start_ingest(
    settings: Settings,
    paths: RunPaths,
    components: dict[str, Component],
    env: dict[str, str],
    console: Console,
) -> None:
    """nginx-rtmp (app/streaming/nginx) calling back into the API, when nginx is installed."""
    from app.streaming.ingest import IngestConfig, IngestError, start_ingest

    if _live_pid(components.get("nginx-rtmp"), "app"):
        console.print("nginx-rtmp: already running")
        return
    config = IngestConfig(
        run_dir=paths.root / "nginx-rtmp",
        hls_dir=paths.root / "nginx-rtmp" / "hls",
        rtmp_port=settings.stack_rtmp_port,
        http_port=settings.stack_hls_port,
        callback_url=f"http://127.0.0.1:{settings.api_port}/rtmp",
        callback_secret=env["TR_STREAMING_CALLBACK_SECRET"],
        update_interval_s=settings.streaming_update_interval_s,
    )
    try:
        ingest = await asyncio.to_thread(start_ingest, config)
    except IngestError as exc:
        # Streaming is optional locally; the rest of the stack works without it.
        console.print(Text(f"nginx-rtmp: not started ({str(exc).splitlines()[0]})", "yellow"))
        return
    components["nginx-rtmp"] = Component(
        "nginx-rtmp",
        "app",
        f"127.0.0.1:{settings.stack_rtmp_port}",
        env["TR_STREAMING_INGEST_URL"],
        ingest.proc.pid,
    )
    _save_state(paths, components)
    console.print(
        f"nginx-rtmp: started, pid {ingest.proc.pid}, ingest {config.rtmp_port}, "
        f"HLS {env['TR_STREAMING_HLS_BASE_URL']}"
    )


async def up(settings: Settings, *, with_app: bool, console: Console) -> dict[str, str]:
    """Start (or reuse) the backing services, write stack.env; with_app starts app processes."""
    paths = RunPaths(settings.run_dir)
    with _locked(paths):
        components = _load_state(paths)
        steps = (
            ("postgres", _ensure_postgres),
            ("redis", _ensure_redis),
            ("broker", _ensure_broker),
        )
        for name, ensure in steps:
            components[name] = await ensure(settings, paths, components.get(name))
            _save_state(paths, components)  # recorded at once, so `down` can clean up a failed up
            found = components[name]
            pid = f", pid {found.pid}" if found.pid else ""
            console.print(f"{name}: {found.kind} at {found.address}{pid}")
        env = {
            "TR_DATABASE_URL": components["postgres"].url,
            "TR_REDIS_URL": components["redis"].url,
            "TR_KAFKA_BOOTSTRAP": components["broker"].address,
            "TR_API_PORT": str(settings.api_port),
            "TR_API_CHECKOUT_PORT": str(settings.api_checkout_port),
            "TR_PAYMENTS_PORT": str(settings.payments_port),
            "TR_PAYMENTS_URL": f"http://127.0.0.1:{settings.payments_port}",
            "TR_JWT_SECRET": _jwt_secret(paths),
            "TR_STREAMING_CALLBACK_SECRET": _secret(paths.root / "rtmp_callback_secret"),
            "TR_STREAMING_INGEST_URL": f"rtmp://127.0.0.1:{settings.stack_rtmp_port}/live",
            "TR_STREAMING_HLS_BASE_URL": f"http://127.0.0.1:{settings.stack_hls_port}/hls",
        }
        stale = paths.env.exists() and load_stack_env(paths.root) != env
        _write_private(paths.env, "".join(f"{key}={value}\n" for key, value in env.items()))
        if stale and any(
            _live_pid(components.get(name), "app") for name in app_processes(settings)
        ):
            console.print(
                Text(
                    "stack.env changed under running app processes: restart them with "
                    "`ticket-rush stack down && ticket-rush stack up --with-app`",
                    "yellow",
                )
            )
        console.print(f"wrote {paths.env}")
        if with_app:
            await _start_apps(settings, paths, components, env, console)
            await _start_ingest(settings, paths, components, env, console)
    return env


def app_processes(settings: Settings) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Name -> (argv, extra environment) of every app process. Consumers after the first get a
    free metrics port each (the first keeps `booking_consumer_metrics_port`)."""
    processes: dict[str, tuple[list[str], dict[str, str]]] = {}
    for name, argv in APP_PROCESSES.items():
        if name == "api-checkout":
            checkout = {"TR_API_PORT": str(settings.api_checkout_port), "TR_API_WORKERS": "1"}
            processes[name] = (argv, checkout)
            continue
        if name != "booking-consumer":
            processes[name] = (argv, {})
            continue
        processes[name] = (argv, {})
        for i in range(2, settings.stack_booking_consumers + 1):
            port = str(free_port()) if settings.booking_consumer_metrics_port else "0"
            processes[f"{name}-{i}"] = (argv, {"TR_BOOKING_CONSUMER_METRICS_PORT": port})
    return processes


def _stop_order(components: dict[str, Component]) -> list[Component]:
    order = ["nginx-rtmp", *reversed(APP_PROCESSES), *_BACKING_STOP_ORDER]
    # Names no longer in the tables (e.g. a renamed app process) go first.
    return sorted(components.values(), key=lambda c: order.index(c.name) if c.name in order else -1)


def down(settings: Settings, console: Console) -> None:
    """Stop every process recorded in stack.json; shared services are left alone."""
    paths = RunPaths(settings.run_dir)
    with _locked(paths):
        components = _load_state(paths)
        paths.env.unlink(missing_ok=True)
        if not components:
            console.print("nothing running")
            return
        failed: dict[str, Component] = {}
        for component in _stop_order(components):
            if component.kind == "shared" or component.pid is None:
                continue
            try:
                if component.name == "postgres":
                    if process_alive(component.pid):
                        _stop_private_postgres(paths, component.pid)
                else:
                    stop_process(component.pid)
            except StackError as exc:
                console.print(Text(f"{component.name}: {exc}", "red"))
                failed[component.name] = component
                continue
            console.print(f"{component.name}: stopped (pid {component.pid})")
        if failed:
            _save_state(paths, failed)
            raise StackError(f"could not stop: {', '.join(failed)} (still in {paths.state})")
        paths.state.unlink()


_PROBES: dict[str, Callable[[Component], Awaitable[None]]] = {
    "postgres": _probe_postgres,
    "redis": _probe_redis,
    "broker": _probe_broker,
    "api": _probe_api,
    "api-checkout": _probe_api,
    "payments-sim": _probe_api,
}


async def _health(probe: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(probe, timeout=5)
    except Exception as exc:  # any failure is a health answer, not a crash of `status`
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return "ok"


async def _status_of(component: Component) -> ComponentStatus:
    alive = None if component.kind == "shared" else _live_pid(component, component.kind) is not None
    probe = _PROBES.get(component.name)
    health = None if probe is None else await _health(probe(component))
    return ComponentStatus(component, alive, health)


async def status(settings: Settings) -> list[ComponentStatus]:
    """Liveness and a health probe for every component recorded by `up`."""
    components = _load_state(RunPaths(settings.run_dir))
    return list(await asyncio.gather(*(_status_of(c) for c in components.values())))


def status_table(rows: list[ComponentStatus]) -> Table:
    table = Table(title="ticket-rush local stack")
    for column in ("component", "kind", "address", "pid", "process", "health"):
        table.add_column(column)
    for row in rows:
        c = row.component
        process = {None: Text("-"), True: Text("alive", "green"), False: Text("dead", "red")}
        health = Text(row.health or "-", "green" if row.ok else "red")
        table.add_row(c.name, c.kind, c.address, str(c.pid or "-"), process[row.alive], health)
    return table
