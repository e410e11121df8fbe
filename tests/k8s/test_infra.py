"""The Pulumi program under Pulumi's mocks: the resources it declares, their dependencies and
how the stack config reaches them. The app release's values are rendered through the real chart.
"""

from __future__ import annotations

import asyncio
import copy
import json
import runpy
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import helm_python
import kubernetes_validate
import pulumi
import pytest
import yaml

from app.core.config import PROJECT_ROOT
from tests.k8s.conftest import render

INFRA_DIR = PROJECT_ROOT / "infra"
sys.path.insert(0, str(INFRA_DIR))

from components.app import APP_SECRET, chart_values  # noqa: E402
from components.platform import TicketRushPlatform  # noqa: E402
from components.settings import PlatformConfig, PlatformSecrets, load_config  # noqa: E402

SECRETS = {
    "jwtSecret": "jwt-from-pulumi-0123456789abcdef0123456789abcdef",
    "dbPassword": "db pass/with:odd@chars",
    "redisPassword": "redis-Pa55-from-pulumi",
    "operatorAdminPassword": "operator-Pa55-from-pulumi",
}
# How the engine receives a secret value: {SIG_KEY: SECRET_SIG, "value": ...} (pulumi's wire format).
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
PARTITIONS = {"booking-requests": 7, "booking-results": 5, "booking-requests.dlq": 2}


F = TypeVar("F", bound=Callable[..., Any])


def mock_test(fn: F) -> F:
    """`pulumi.runtime.test`, typed: waits for the Output the test returns."""
    return cast(F, pulumi.runtime.test(fn))  # type: ignore[no-untyped-call]


def is_secret_value(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """The plain value under any secret markers (to validate the object itself)."""
    if is_secret_value(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    depends_on: list[str] = field(default_factory=list)
    parent: str | None = None


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: dict[str, Recorded] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.setdefault(args.name, Recorded(args.typ, args.name, {}))
        self.resources[args.name].inputs = args.inputs
        return f"{args.name}-id", args.inputs

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


@dataclass
class Program:
    mocks: Mocks
    names: dict[int, str] = field(default_factory=dict)
    declared: list[pulumi.Resource] = field(default_factory=list)

    def record(self, args: pulumi.ResourceTransformationArgs) -> None:
        """A transformation (inherited by every child) that notes each resource's options."""
        self.names[id(args.resource)] = args.name
        self.declared.append(args.resource)
        entry = self.mocks.resources.setdefault(args.name, Recorded(args.type_, args.name, {}))
        entry.depends_on = [self.names.get(id(d), "?") for d in (args.opts.depends_on or [])]  # type: ignore[union-attr]
        if args.opts.parent is not None:
            entry.parent = self.names.get(id(args.opts.parent))
        return None

    def settled(self, *outputs: Any) -> pulumi.Output[list[Any]]:
        """Resolves once every declared resource is registered with the mock engine."""
        return pulumi.Output.all(*outputs, *(r.urn for r in self.declared))

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.mocks.resources.values() if r.typ == typ]

    def get(self, name: str) -> Recorded:
        return self.mocks.resources[name]


@pytest.fixture(autouse=True)
def event_loop_for_pulumi() -> Iterator[None]:
    """Pulumi's Outputs and mocks use the thread's current event loop; an earlier asyncio.run()
    (session fixtures) leaves none set, so each test gets its own."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture
def program() -> Iterator[Program]:
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="ticket-rush", stack="test", preview=False)
    yield Program(mocks)


@pytest.fixture
def dashboards(tmp_path: Path) -> Path:
    directory = tmp_path / "dashboards"
    directory.mkdir()
    for title in ("Sale Overview", "Kafka pipeline"):
        (directory / f"{title.lower().replace(' ', '_')}.json").write_text(
            json.dumps({"title": title, "panels": [{"type": "timeseries"}]})
        )
    (directory / "README.md").write_text("not a dashboard")
    return directory


def make_config(dashboards: Path, **overrides: Any) -> PlatformConfig:
    return PlatformConfig(
        secrets=PlatformSecrets(
            jwt_secret=pulumi.Output.secret(SECRETS["jwtSecret"]),
            db_password=pulumi.Output.secret(SECRETS["dbPassword"]),
            redis_password=pulumi.Output.secret(SECRETS["redisPassword"]),
            operator_admin_password=pulumi.Output.secret(SECRETS["operatorAdminPassword"]),
        ),
        operator_admin_email="operator@ticket-rush.example",
        kafka_partitions=dict(PARTITIONS),
        consumer_replicas=overrides.pop("consumer_replicas", 3),
        dashboards_dir=dashboards,
        **overrides,
    )


def render_valid(chart: helm_python.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart rendered with `values`, every object valid for Kubernetes 1.30 (the
    monitoring CRDs' kinds have no schema there)."""
    objects = render(chart, copy.deepcopy(values))
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, "1.30.0", strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] in {"ServiceMonitor", "PrometheusRule"}
    return objects


def build(program: Program, config: PlatformConfig) -> TicketRushPlatform:
    return TicketRushPlatform(
        "ticket-rush",
        config,
        opts=pulumi.ResourceOptions(transformations=[program.record]),
    )


@mock_test
def test_platform_declares_every_piece(program: Program, dashboards: Path) -> pulumi.Output[Any]:
    build(program, make_config(dashboards))

    def check(_: Any) -> None:
        releases = {r.inputs["chart"]: r for r in program.of_type("kubernetes:helm.sh/v3:Release")}
        assert set(releases) == {
            "cloudnative-pg",
            "oci://quay.io/strimzi-helm/strimzi-kafka-operator",
            "kube-prometheus-stack",
            str(PROJECT_ROOT / "helm" / "ticket-rush"),
        }
        app_release = releases[str(PROJECT_ROOT / "helm" / "ticket-rush")]
        # The chart carries the ConcertSale CRD (crds/) and the operator: Helm installs both.
        assert app_release.inputs.get("skipCrds") is False
        assert app_release.inputs["values"]["operator"]["enabled"] is True
        (cluster,) = program.of_type("kubernetes:postgresql.cnpg.io/v1:Cluster")
        assert cluster.inputs["spec"]["bootstrap"]["initdb"]["database"] == "ticket_rush"
        (kafka,) = program.of_type("kubernetes:kafka.strimzi.io/v1beta2:Kafka")
        assert kafka.inputs["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
        assert "zookeeper" not in kafka.inputs["spec"]
        (pool,) = program.of_type("kubernetes:kafka.strimzi.io/v1beta2:KafkaNodePool")
        assert pool.inputs["spec"]["roles"] == ["controller", "broker"]
        assert (
            pool.inputs["metadata"]["labels"]["strimzi.io/cluster"]
            == kafka.inputs["metadata"]["name"]
        )
        (redis,) = program.of_type("kubernetes:apps/v1:StatefulSet")
        args = redis.inputs["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--appendonly") + 1] == "yes"
        assert redis.inputs["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
        (namespace,) = program.of_type("kubernetes:core/v1:Namespace")
        assert namespace.inputs["metadata"]["name"] == "ticket-rush"
        nginx = program.get("nginx-rtmp-config")
        assert "rtmp {" in nginx.inputs["data"]["nginx.conf"]
        (deployment,) = program.of_type("kubernetes:apps/v1:Deployment")
        assert (
            deployment.inputs["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
            == "nginx-rtmp-config"
        )
        assert program.get("nginx-rtmp-service").inputs["spec"]["ports"][0]["port"] == 1935
        for recorded in program.mocks.resources.values():
            if recorded.name != "ticket-rush":
                assert recorded.parent is not None, f"{recorded.name} is outside the component"

    return program.settled().apply(check)


@mock_test
def test_dashboards_become_grafana_configmaps(
    program: Program, dashboards: Path
) -> pulumi.Output[Any]:
    build(program, make_config(dashboards))

    def check(_: Any) -> None:
        maps = [
            r
            for r in program.of_type("kubernetes:core/v1:ConfigMap")
            if r.inputs["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        ]
        assert sorted(m.inputs["metadata"]["name"] for m in maps) == [
            "dashboard-kafka-pipeline",
            "dashboard-sale-overview",
        ]
        for m in maps:
            assert m.inputs["metadata"]["namespace"] == "monitoring"
            ((file_name, body),) = m.inputs["data"].items()
            assert json.loads(body) == json.loads((dashboards / file_name).read_text())
            assert m.depends_on == ["monitoring-kube-prometheus-stack"]
        stack = program.get("monitoring-kube-prometheus-stack").inputs["values"]
        sidecar = stack["grafana"]["sidecar"]["dashboards"]
        assert (sidecar["label"], sidecar["labelValue"]) == ("grafana_dashboard", "1")

    return program.settled().apply(check)


@mock_test
def test_dependencies_order_the_rollout(program: Program, dashboards: Path) -> pulumi.Output[Any]:
    build(program, make_config(dashboards))

    def check(_: Any) -> None:
        release = program.get("app-release")
        topics = [r.name for r in program.of_type("kubernetes:kafka.strimzi.io/v1beta2:KafkaTopic")]
        assert len(topics) == 3
        assert set(release.depends_on) >= {
            "ticket-rush-namespace",
            "app-secret",
            "ticket-rush-db-cluster",
            "redis-statefulset",
            "redis-service",
            "ticket-rush-kafka",
            "ticket-rush-pool",
            "monitoring-kube-prometheus-stack",
            *topics,
        }
        for topic in topics:
            assert set(program.get(topic).depends_on) == {"ticket-rush-kafka", "ticket-rush-pool"}
        assert "ticket-rush-strimzi" in program.get("ticket-rush-kafka").depends_on
        assert "ticket-rush-strimzi" in program.get("ticket-rush-pool").depends_on
        assert "ticket-rush-db-cnpg" in program.get("ticket-rush-db-cluster").depends_on
        assert "ticket-rush-db-owner" in program.get("ticket-rush-db-cluster").depends_on
        assert "redis-auth" in program.get("redis-statefulset").depends_on

    return program.settled().apply(check)


@mock_test
def test_partitions_from_config_reach_topics_and_chart(
    program: Program, dashboards: Path, chart: helm_python.Chart
) -> pulumi.Output[Any]:
    build(program, make_config(dashboards))

    def check(_: Any) -> None:
        topics = {
            r.inputs["spec"]["topicName"]: r.inputs["spec"]
            for r in program.of_type("kubernetes:kafka.strimzi.io/v1beta2:KafkaTopic")
        }
        assert {name: spec["partitions"] for name, spec in topics.items()} == PARTITIONS
        values = program.get("app-release").inputs["values"]
        assert values["kafka"]["topics"] == PARTITIONS
        assert values["kafka"]["bootstrap"] == "ticket-rush-kafka-bootstrap.ticket-rush.svc:9092"
        assert values["secrets"] == {"existingSecret": APP_SECRET}
        # The values Pulumi hands to Helm pass the chart's schema and render valid objects.
        objects = render_valid(chart, values)
        config_map = next(o for o in objects if o["kind"] == "ConfigMap")
        assert json.loads(config_map["data"]["TR_KAFKA_TOPICS"]) == PARTITIONS
        consumer = next(
            o
            for o in objects
            if o["kind"] == "Deployment" and o["metadata"]["name"] == "ticket-rush-booking-consumer"
        )
        assert consumer["spec"]["replicas"] == 3
        refs = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for o in objects
            if o["kind"] in {"Deployment", "Job"}
            for c in o["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert refs == {APP_SECRET}
        assert program.get("app-secret").inputs["metadata"]["name"] == APP_SECRET
        assert any(o["kind"] == "ServiceMonitor" for o in objects)
        assert any(o["kind"] == "PrometheusRule" for o in objects)

    return program.settled().apply(check)


@mock_test
def test_secrets_stay_secret(program: Program, dashboards: Path) -> pulumi.Output[Any]:
    platform = build(program, make_config(dashboards))
    secret = platform.app.secret

    async def secretness() -> list[bool]:
        return [
            await platform.database.database_url.is_secret(),
            await platform.cache.redis_url.is_secret(),
            await secret.string_data.is_secret(),
        ]

    def check(args: list[Any]) -> None:
        string_data, flags = args[:2]
        assert flags == [True, True, True]
        assert string_data["TR_DATABASE_URL"] == (
            "postgresql+asyncpg://ticket_rush:db%20pass%2Fwith%3Aodd%40chars"
            "@ticket-rush-db-rw.ticket-rush.svc:5432/ticket_rush"
        )
        assert string_data["TR_REDIS_URL"] == (
            "redis://:redis-Pa55-from-pulumi@redis.ticket-rush.svc:6379/0"
        )
        assert string_data["TR_JWT_SECRET"] == SECRETS["jwtSecret"]
        holders = {"app-secret", "ticket-rush-db-owner", "redis-auth"}
        # The engine (and so the state file) gets these Secrets' data marked secret.
        for holder in holders:
            assert is_secret_value(program.get(holder).inputs["stringData"]), holder
        for recorded in program.mocks.resources.values():
            text = json.dumps(recorded.inputs)
            leaked = [name for name, value in SECRETS.items() if value in text]
            if recorded.name not in holders:
                assert leaked == [], f"{recorded.name} carries {leaked} outside a Secret"

    flags: pulumi.Output[list[bool]] = pulumi.Output.from_input(secretness())
    return program.settled(secret.string_data, flags).apply(check)


@mock_test
def test_monitoring_can_be_left_out(program: Program, dashboards: Path) -> pulumi.Output[Any]:
    build(program, make_config(dashboards, monitoring=False))

    def check(_: Any) -> None:
        charts = {r.inputs["chart"] for r in program.of_type("kubernetes:helm.sh/v3:Release")}
        assert "kube-prometheus-stack" not in charts
        assert program.get("app-release").inputs["values"]["serviceMonitor"] == {"enabled": False}
        assert program.get("app-release").inputs["values"]["prometheusRule"] == {"enabled": False}
        assert "monitoring-kube-prometheus-stack" not in program.get("app-release").depends_on

    return program.settled().apply(check)


def test_bad_config_fails_early(dashboards: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"consumerReplicas \(8\) exceeds the booking-requests partitions \(7\)"
    ):
        make_config(dashboards, consumer_replicas=8)
    with pytest.raises(ValueError, match="lacks"):
        replace(make_config(dashboards), kafka_partitions={"booking-requests": 3})
    with pytest.raises(
        ValueError, match=r"checkoutMinReplicas \(3\) must be 1..checkoutMaxReplicas \(2\)"
    ):
        make_config(dashboards, checkout_min_replicas=3, checkout_max_replicas=2)
    with pytest.raises(ValueError, match="ingressTlsSecret needs ingressHost"):
        make_config(dashboards, ingress_tls_secret="tls")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.json").write_text("{not json")
    from components.monitoring import dashboard_files

    with pytest.raises(ValueError, match="not valid JSON"):
        dashboard_files(broken)
    assert dashboard_files(tmp_path / "absent") == []


def stack_config(stack: str) -> dict[str, str]:
    """A stack file's settings as the Pulumi engine hands them over (objects as JSON)."""
    settings = yaml.safe_load((INFRA_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()}
    config |= {f"ticket-rush:{k}": v for k, v in SECRETS.items()}
    return config


@pytest.mark.parametrize("stack", ["kind", "prod"])
def test_stack_files_load(stack: str, program: Program, chart: helm_python.Chart) -> None:
    config = stack_config(stack)
    pulumi.runtime.set_all_config(config, secret_keys=[f"ticket-rush:{k}" for k in SECRETS])
    try:
        loaded = load_config(pulumi.Config("ticket-rush"))
    finally:
        pulumi.runtime.set_all_config({})
    expected = yaml.safe_load((INFRA_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert loaded.kafka_partitions == expected["ticket-rush:kafkaPartitions"]
    assert loaded.kafka_brokers == expected["ticket-rush:kafkaBrokers"]
    assert loaded.image_repository == expected["ticket-rush:imageRepository"]
    assert loaded.consumer_replicas <= loaded.kafka_partitions["booking-requests"]
    # Every key in the stack file is one load_config reads (no silently ignored typo).
    from components import settings as settings_module

    known = set(settings_module._STRINGS) | set(settings_module._INTS) | set(settings_module._PATHS)
    known |= set(settings_module._BOOLS) | {"kafkaPartitions", "operatorAdminEmail"}
    assert {k.split(":", 1)[1] for k in expected} <= known
    values = chart_values(loaded, kafka_bootstrap="k:9092")
    assert values["image"]["pullPolicy"] == expected.get(
        "ticket-rush:imagePullPolicy", "IfNotPresent"
    )
    node_port = expected.get("ticket-rush:apiNodePort")
    assert values["api"]["service"] == (
        {"type": "NodePort", "nodePort": node_port} if node_port else {"type": "ClusterIP"}
    )
    # The stack's values through the real chart: valid objects, the checkout pods sized as the
    # stack says, and the Ingress (when the stack has a host) sending checkout calls to them.
    objects = render_valid(chart, values)
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    hpa = by_name[("HorizontalPodAutoscaler", "ticket-rush-api-checkout")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
        expected["ticket-rush:checkoutMinReplicas"],
        expected["ticket-rush:checkoutMaxReplicas"],
    )
    assert ("Deployment", "ticket-rush-api-checkout") in by_name
    host = expected.get("ticket-rush:ingressHost")
    ingress = by_name.get(("Ingress", "ticket-rush-api"))
    if host is None:
        assert ingress is None
        return
    assert ingress is not None
    spec = ingress["spec"]
    assert spec["ingressClassName"] == expected["ticket-rush:ingressClassName"]
    assert spec["tls"] == [
        {"hosts": [host], "secretName": expected["ticket-rush:ingressTlsSecret"]}
    ]
    (rule,) = spec["rules"]
    assert rule["host"] == host
    backends = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert backends["/bookings"] == "ticket-rush-api-checkout"
    assert backends["/"] == "ticket-rush-api"
    assert any("seats" in path and name.endswith("-checkout") for path, name in backends.items())


@mock_test
def test_required_secrets_are_pulumi_secrets(program: Program) -> pulumi.Output[Any]:
    pulumi.runtime.set_all_config(
        stack_config("kind"), secret_keys=[f"ticket-rush:{k}" for k in SECRETS]
    )
    loaded = load_config(pulumi.Config("ticket-rush"))
    pulumi.runtime.set_all_config({})
    outputs = [
        loaded.secrets.jwt_secret,
        loaded.secrets.db_password,
        loaded.secrets.redis_password,
        loaded.secrets.operator_admin_password,
    ]

    async def flags() -> list[bool]:
        return [await o.is_secret() for o in outputs]

    def check(args: list[Any]) -> None:
        *values, secret_flags = args
        assert values == [
            SECRETS[k]
            for k in ("jwtSecret", "dbPassword", "redisPassword", "operatorAdminPassword")
        ]
        assert secret_flags == [True] * 4

    flag_output: pulumi.Output[list[bool]] = pulumi.Output.from_input(flags())
    return pulumi.Output.all(*outputs, flag_output).apply(check)


def test_missing_secret_is_a_clear_error(program: Program) -> None:
    config = stack_config("kind")
    del config["ticket-rush:jwtSecret"]
    pulumi.runtime.set_all_config(config)
    try:
        with pytest.raises(pulumi.ConfigMissingError, match="ticket-rush:jwtSecret"):
            load_config(pulumi.Config("ticket-rush"))
    finally:
        pulumi.runtime.set_all_config({})


@mock_test
def test_main_composes_the_platform(program: Program, dashboards: Path) -> None:
    config = stack_config("kind") | {"ticket-rush:dashboardsDir": str(dashboards)}
    pulumi.runtime.set_all_config(config, secret_keys=[f"ticket-rush:{k}" for k in SECRETS])
    try:
        namespace = runpy.run_path(str(INFRA_DIR / "__main__.py"))["platform"]
    finally:
        pulumi.runtime.set_all_config({})
    assert isinstance(namespace, TicketRushPlatform)
    assert namespace.kafka.bootstrap == "ticket-rush-kafka-bootstrap.ticket-rush.svc:9092"


# Custom resources the program declares, whose CRDs come with their operators' charts.
OPERATOR_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("kafka.strimzi.io/v1beta2", "Kafka"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
}


@mock_test
def test_every_plain_object_matches_the_kubernetes_schema(
    program: Program, dashboards: Path
) -> pulumi.Output[Any]:
    build(program, make_config(dashboards))

    def check(_: Any) -> None:
        checked = 0
        for recorded in program.mocks.resources.values():
            if not recorded.typ.startswith("kubernetes:") or "helm.sh" in recorded.typ:
                continue
            obj = reveal(recorded.inputs)
            try:
                kubernetes_validate.validate(obj, "1.30.0", strict=True)
                checked += 1
            except kubernetes_validate.SchemaNotFoundError:
                assert (obj["apiVersion"], obj["kind"]) in OPERATOR_KINDS, recorded.typ
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{recorded.name}: {exc.message} at {list(exc.path)}")
        assert checked >= 10

    return program.settled().apply(check)
