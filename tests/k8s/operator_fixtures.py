"""Fixtures for the operator tests: the Kubernetes API emulator, a kubeconfig for it, a real
API process the test can stop and start again, an admin account for the operator, and the
real `kopf run` operator process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kmock
import pytest
import yaml

from app.core.config import Settings
from app.devstack.broker import ensure_topics, free_port, spawn, stop_process
from tests.conftest import PASSWORD, ROOT, unique_email
from tests.k8s.emulator import (
    CONCERTSALES,
    DEPLOYMENTS,
    NAMESPACE,
    ClusterEmulator,
    write_kubeconfig,
)
from tests.queue.conftest import process_env

CRD_PATH = ROOT / "helm" / "ticket-rush" / "crds" / "concertsale.yaml"
CONSUMER_DEPLOYMENT = "ticket-rush-booking-consumer"


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """What the API server's OpenAPI v3 (draft-4 style) validation would reject."""
    validator = jsonschema.Draft4Validator(
        crd_schema(), format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]


def concert_sale(
    name: str,
    concert_id: int,
    *,
    opens_in: float,
    closes_in: float,
    warmup_s: int = 2,
    **consumers: int,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "apiVersion": "ticketrush.io/v1",
        "kind": "ConcertSale",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "concertId": concert_id,
            "opensAt": (now + timedelta(seconds=opens_in)).isoformat().replace("+00:00", "Z"),
            "closesAt": (now + timedelta(seconds=closes_in)).isoformat().replace("+00:00", "Z"),
            "warmupSeconds": warmup_s,
            "admission": {"initialRate": 20, "minRate": 2, "maxRate": 100, "maxActive": 50},
            "consumers": {"min": 1, "max": 3, "targetLagPerReplica": 10}
            | {"scaleDownStabilizationSeconds": 2}
            | consumers,
        },
    }


@dataclass
class Cluster:
    emulator: ClusterEmulator
    url: str
    kubeconfig: Path

    def sale(self, name: str) -> dict[str, Any] | None:
        key = (CONCERTSALES, NAMESPACE, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return dict(self.emulator.objects[key].raw)

    def replicas(self) -> int:
        obj = self.emulator.objects[DEPLOYMENTS, NAMESPACE, CONSUMER_DEPLOYMENT]
        return int(obj["spec"]["replicas"])

    def events(self) -> list[dict[str, Any]]:
        return [
            dict(obj.raw)
            for (resource, _, _), obj in self.emulator.objects.items()
            if resource == kmock.resource("", "v1", "events") and not obj.deleted
        ]

    async def kubectl(self, *args: str, stdin: bytes | None = None) -> str:
        """Run kubectl against the emulator without blocking the loop that serves it."""
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "kubectl"),
            f"--kubeconfig={self.kubeconfig}",
            f"--namespace={NAMESPACE}",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=30)
        assert proc.returncode == 0, f"kubectl {args}: {err.decode()}"
        return out.decode()


@pytest.fixture
async def k8s_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """The emulator served from this test's loop, with the booking-consumer Deployment."""
    async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.add_deployment(CONSUMER_DEPLOYMENT, replicas=1)
        url = str(server.url).rstrip("/")
        yield Cluster(emulator, url, write_kubeconfig(tmp_path / "kubeconfig", url))


@dataclass
class ApiProcess:
    """The real API (one uvicorn worker) on a fixed port, stoppable and restartable."""

    settings: Settings
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = process_env(
            self.settings,
            TR_API_PORT=str(self.port),
            TR_API_WORKERS="1",
            TR_LOG_LEVEL="WARNING",
            PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="tr-test-op-metrics-"),
        )
        self.proc = spawn([sys.executable, "-m", "app.api"], self.log_path, env=env, cwd=ROOT)

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(self.url + "/healthz", timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("API did not start:\n" + self.log_path.read_text()[-3000:])

    async def stop(self) -> None:
        # In a thread: the emulator is served from this loop and must keep answering.
        if self.proc is not None and self.proc.poll() is None:
            await asyncio.to_thread(stop_process, self.proc.pid)
        self.proc = None


@pytest.fixture(scope="session")
async def operator_api(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiProcess]:
    api = ApiProcess(settings, free_port(), tmp_path_factory.mktemp("op-api") / "api.log")
    api.start()
    await api.wait_ready()
    yield api
    await api.stop()


@pytest.fixture(scope="session")
async def operator_admin(app: Any) -> tuple[str, str]:
    """An admin account the operator logs in with (email, password)."""
    from app.auth.models import Role
    from app.auth.service import create_user

    email = unique_email("operator")
    async with app.state.tr.sessionmaker() as session:
        await create_user(
            session, email=email, password=PASSWORD, display_name="Operator", role=Role.admin
        )
    return email, PASSWORD


@dataclass
class KafkaTopic:
    bootstrap: str
    name: str
    group: str
    partitions: int


@pytest.fixture
async def requests_topic(kafka_bootstrap: str) -> KafkaTopic:
    """A booking-requests topic (2 partitions) and consumer group of this test alone."""
    topic = KafkaTopic(
        kafka_bootstrap, f"booking-requests-{uuid.uuid4().hex[:8]}", f"bc-{uuid.uuid4().hex[:8]}", 2
    )
    await ensure_topics(kafka_bootstrap, {topic.name: topic.partitions})
    return topic


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class OperatorLauncher:
    cluster: Cluster
    settings: Settings
    admin: tuple[str, str]
    topic: KafkaTopic
    tmp_path: Path
    started: list[OperatorProcess] = field(default_factory=list)

    def start(self, api_url: str, **extra: str) -> OperatorProcess:
        env = (
            os.environ
            | {
                "KUBECONFIG": str(self.cluster.kubeconfig),
                "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'operator'}",
                "TR_OPERATOR_API_URL": api_url,
                "TR_OPERATOR_ADMIN_EMAIL": self.admin[0],
                "TR_OPERATOR_ADMIN_PASSWORD": self.admin[1],
                "TR_OPERATOR_REDIS_URL": self.settings.redis_url,
                "TR_OPERATOR_REDIS_PREFIX": self.settings.redis_prefix,
                "TR_OPERATOR_KAFKA_BOOTSTRAP": self.topic.bootstrap,
                "TR_OPERATOR_REQUESTS_TOPIC": self.topic.name,
                "TR_OPERATOR_CONSUMER_GROUP": self.topic.group,
                "TR_OPERATOR_CONSUMER_DEPLOYMENT": CONSUMER_DEPLOYMENT,
                "TR_OPERATOR_RECONCILE_INTERVAL_S": "0.5",
                "TR_OPERATOR_RETRY_BASE_S": "0.5",
                "TR_OPERATOR_RETRY_MAX_S": "1",
                "TR_OPERATOR_HTTP_TIMEOUT_S": "2",
                # A visible step per reconcile in the tests (10% of the max rate).
                "TR_OPERATOR_RATE_INCREASE": "0.1",
            }
            | extra
        )
        log_path = self.tmp_path / f"operator-{len(self.started)}.log"
        argv = [
            str(Path(sys.executable).parent / "kopf"),
            "run",
            "--standalone",
            "--verbose",
            f"--namespace={NAMESPACE}",
            "-m",
            "ticket_rush_operator.handlers",
        ]
        proc = spawn(argv, log_path, env=env, cwd=ROOT)
        operator = OperatorProcess(proc, log_path)
        self.started.append(operator)
        return operator

    async def stop(self, operator: OperatorProcess) -> None:
        if operator.alive():
            await asyncio.to_thread(stop_process, operator.proc.pid)


@pytest.fixture
async def operator_launcher(
    k8s_cluster: Cluster,
    settings: Settings,
    operator_admin: tuple[str, str],
    requests_topic: KafkaTopic,
    tmp_path: Path,
) -> AsyncIterator[OperatorLauncher]:
    launcher = OperatorLauncher(k8s_cluster, settings, operator_admin, requests_topic, tmp_path)
    yield launcher
    for operator in launcher.started:
        await launcher.stop(operator)


async def wait_for(
    check: Callable[[], Any],
    *,
    timeout: float = 20,
    pause: float = 0.2,
    what: str = "",
    context: Callable[[], Any] = lambda: "",
) -> Any:
    """Poll `check()` (sync) from the loop until it returns something truthy; `context()` is
    shown when it times out."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}: {context()}")
        await asyncio.sleep(pause)
