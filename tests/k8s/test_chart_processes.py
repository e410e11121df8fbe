"""The chart's processes for real: each app container's command and environment, taken from the
rendered manifests (ConfigMap + Secret resolved as the kubelet would), started as a local
process against the test session's PostgreSQL, Redis and broker. Every probe must answer, the
migration hook's command must work, and the operator's credentials must log in to that API."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import httpx
import pytest

from app.core.config import Settings
from app.devstack.broker import free_port, spawn, stop_process
from tests.conftest import ROOT
from tests.k8s.conftest import NAMESPACE, Manifest, render

COMPONENTS = ("api", "api-checkout", "admission", "booking-consumer", "payments-sim")


def resolve_env(container: dict[str, Any], objects: list[Manifest]) -> dict[str, str]:
    """The container's environment as the kubelet builds it from envFrom and env."""
    config_maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: o["stringData"] for o in objects if o["kind"] == "Secret"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= config_maps[source["configMapRef"]["name"]]
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "fieldRef" in item["valueFrom"]:
            assert item["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.namespace"}
            env[item["name"]] = NAMESPACE
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def command_line(container: dict[str, Any]) -> list[str]:
    argv = [*container.get("command", []), *container.get("args", [])]
    # The image's interpreter is this test's: same code, same dependencies.
    if argv[0] == "python":
        argv[0] = sys.executable
    elif argv[0] == "ticket-rush":
        argv[0] = str(Path(sys.executable).with_name("ticket-rush"))
    return argv


@pytest.fixture(scope="module")
def chart_values(settings: Settings) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    return {
        "secrets": {
            "existingSecret": "",
            "databaseUrl": settings.database_url,
            "redisUrl": settings.redis_url,
            "jwtSecret": settings.jwt_secret.get_secret_value(),
            "operatorAdminEmail": f"operator-{uuid.uuid4().hex[:8]}@ticket-rush.example",
            "operatorAdminPassword": "operator-Pa55word-chart",
        },
        # Own consumer group and Redis prefix: these processes must not touch other tests' state.
        "kafka": {"bootstrap": settings.kafka_bootstrap, "consumerGroup": f"chart-{suffix}"},
        "redis": {"prefix": f"{settings.redis_prefix}-chart-{suffix}"},
        # Free ports: other processes on this machine may hold the default ones.
        "api": {"port": free_port(), "workers": 1, "service": {"port": free_port()}},
        "admission": {"metricsPort": free_port()},
        "bookingConsumer": {"metricsPort": free_port(), "replicas": 1},
        "paymentsSim": {"port": free_port()},
        "config": {"logLevel": "WARNING"},
    }


@pytest.fixture(scope="module")
def objects(chart: helm_python.Chart, chart_values: dict[str, Any]) -> list[Manifest]:
    return render(chart, chart_values)


@pytest.fixture(scope="module")
def checkout_objects(chart: helm_python.Chart, chart_values: dict[str, Any]) -> list[Manifest]:
    """api-checkout's pods listen on api.port as well (each pod has its own network); here both
    run on one host, so api-checkout comes from a render that differs only in that port."""
    return render(chart, chart_values | {"api": chart_values["api"] | {"port": free_port()}})


def container_of(objects: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return containers[0]


def deployment(
    component: str, objects: list[Manifest], checkout_objects: list[Manifest]
) -> tuple[dict[str, Any], list[Manifest]]:
    """The component's container and the objects its environment comes from."""
    source = checkout_objects if component == "api-checkout" else objects
    return container_of(source, "Deployment", f"ticket-rush-{component}"), source


@pytest.fixture(scope="module")
def running(
    objects: list[Manifest],
    checkout_objects: list[Manifest],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    logs = tmp_path_factory.mktemp("chart-processes")
    procs = []
    for component in COMPONENTS:
        container, source = deployment(component, objects, checkout_objects)
        env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
        env |= resolve_env(container, source)
        # The pod's emptyDir /tmp: a private one per process here.
        env["TMPDIR"] = str(logs)
        procs.append(spawn(command_line(container), logs / f"{component}.log", env=env, cwd=ROOT))
    yield logs
    for proc in procs:
        stop_process(proc.pid)


def wait_ok(url: str, timeout: float = 45) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=3)
            if response.status_code == 200:
                return response
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{url} never answered 200 (last: {last!r})")


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_probe_is_answered_by_the_real_process(
    component: str, objects: list[Manifest], checkout_objects: list[Manifest], running: Path
) -> None:
    container, _ = deployment(component, objects, checkout_objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = [
        container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in container
    ]
    assert probes
    for probe in probes:
        get = probe["httpGet"]
        try:
            wait_ok(f"http://127.0.0.1:{ports[get['port']]}{get['path']}")
        except AssertionError:
            raise AssertionError((running / f"{component}.log").read_text()[-3000:]) from None
    if component.startswith("api"):
        ready = wait_ok(f"http://127.0.0.1:{ports['http']}/readyz").json()
        assert ready["checks"] == {"postgres": True, "redis": True, "kafka": True}


def test_migration_hook_then_operator_logs_in(
    objects: list[Manifest], chart_values: dict[str, Any], running: Path
) -> None:
    job = container_of(objects, "Job", "ticket-rush-migrate")
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"} | resolve_env(job, objects)
    assert job["command"] == ["/bin/sh", "-c"]
    result = subprocess.run(
        [*job["command"], *job["args"]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    operator = container_of(objects, "Deployment", "ticket-rush-operator")
    operator_env = resolve_env(operator, objects)
    api = container_of(objects, "Deployment", "ticket-rush-api")
    api_port = api["ports"][0]["containerPort"]
    wait_ok(f"http://127.0.0.1:{api_port}/healthz")
    login = httpx.post(
        f"http://127.0.0.1:{api_port}/auth/login",
        json={
            "email": operator_env["TR_OPERATOR_ADMIN_EMAIL"],
            "password": operator_env["TR_OPERATOR_ADMIN_PASSWORD"],
        },
        timeout=10,
    )
    assert login.status_code == 200, login.text
    me = httpx.get(
        f"http://127.0.0.1:{api_port}/users/me",
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        timeout=10,
    )
    assert me.json()["role"] == "admin"
    # A re-run (every upgrade runs the hook again) is harmless.
    again = subprocess.run(
        [*job["command"], *job["args"]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
