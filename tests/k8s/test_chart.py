"""The Helm chart rendered by the real Helm library, every object checked against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict), and the wiring between the objects asserted."""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import urlsplit

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.core.config import PROJECT_ROOT, Settings
from tests.k8s.conftest import CHART_DIR, KUBE_VERSIONS, NAMESPACE, Manifest, load_crd, render

INLINE_SECRETS = {
    "existingSecret": "",
    "databaseUrl": "postgresql+asyncpg://ticket_rush:pg-Pa55word-9f3k@db-rw:5432/ticket_rush",
    "redisUrl": "redis://:redis-Pa55word-7c1q@redis:6379/0",
    "jwtSecret": "jwt-secret-value-0123456789abcdef0123456789",
    "operatorAdminEmail": "operator@ticket-rush.example",
    "operatorAdminPassword": "operator-Pa55word-2z8x",
}
SECRET_VALUES = [v for k, v in INLINE_SECRETS.items() if k != "existingSecret"]

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "inline-secrets": {"secrets": INLINE_SECRETS},
    "prod-like": {
        "image": {"repository": "registry.example/ticket-rush/app", "tag": "1.4.2"},
        "secrets": INLINE_SECRETS,
        "kafka": {
            "bootstrap": "kafka-0.kafka:9092,kafka-1.kafka:9092",
            "topics": {"booking-requests": 24, "booking-results": 12, "booking-requests.dlq": 3},
        },
        "api": {
            "workers": 4,
            "autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 40},
        },
        "apiCheckout": {
            "workers": 2,
            "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
        },
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "tickets.example",
            "tls": "tickets-example-tls",
            "regexPaths": True,
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1m"},
        },
        "admission": {"replicas": 3},
        "bookingConsumer": {"replicas": 24},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "topologySpread": {"whenUnsatisfiable": "DoNotSchedule"},
        "config": {"env": "prod", "extra": {"TR_HOLD_TTL_S": "240", "TR_DB_POOL_SIZE": "20"}},
    },
    "minimal": {
        "operator": {"enabled": False},
        "paymentsSim": {"enabled": False},
        "migrations": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "topologySpread": {"enabled": False},
        "api": {"replicas": 1, "autoscaling": {"enabled": False}},
        "apiCheckout": {"replicas": 1, "autoscaling": {"enabled": False}},
        "admission": {"replicas": 1},
        "bookingConsumer": {"replicas": 1},
        "config": {"extra": {"TR_PAYMENTS_URL": "https://payments.example"}},
    },
    "hpa-off": {
        "api": {"replicas": 3, "autoscaling": {"enabled": False}},
        "apiCheckout": {"replicas": 2, "autoscaling": {"enabled": False}},
    },
    "kind-nodeport": {
        "image": {"repository": "localhost/ticket-rush-app", "tag": "dev", "pullPolicy": "Never"},
        "api": {"service": {"type": "NodePort", "nodePort": 30080}},
    },
    "servicemonitor-on": {"serviceMonitor": {"enabled": True}},
    "checkout-off": {"apiCheckout": {"enabled": False}, "serviceMonitor": {"enabled": True}},
    # Any host, the default IngressClass, Prefix paths only; the checkout Service on its own port.
    "ingress-on": {"ingress": {"enabled": True}, "apiCheckout": {"service": {"port": 8081}}},
    "ingress-checkout-off": {
        "apiCheckout": {"enabled": False},
        "ingress": {"enabled": True, "className": "nginx", "regexPaths": True},
    },
}

# Custom resources the chart may render, with the CRD that defines them outside this chart.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
WORKLOAD_KINDS = {"Deployment", "Job"}
APP_COMPONENTS = ["api", "api-checkout", "admission", "booking-consumer", "payments-sim"]
# Components that run `python -m app.api`: the main API and the checkout bulkhead.
API_COMPONENTS = ["api", "api-checkout"]
CONTRACT_ROLE_RULES = [
    {
        "apiGroups": ["ticketrush.io"],
        "resources": ["concertsales"],
        "verbs": ["get", "list", "watch", "patch", "update"],
    },
    {
        "apiGroups": ["ticketrush.io"],
        "resources": ["concertsales/status"],
        "verbs": ["get", "patch", "update"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments/scale"],
        "verbs": ["get", "patch", "update"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]
OPERATOR_ENV = {
    "TR_OPERATOR_API_URL",
    "TR_OPERATOR_ADMIN_EMAIL",
    "TR_OPERATOR_ADMIN_PASSWORD",
    "TR_OPERATOR_REDIS_URL",
    "TR_OPERATOR_REDIS_PREFIX",
    "TR_OPERATOR_KAFKA_BOOTSTRAP",
    "TR_OPERATOR_CONSUMER_DEPLOYMENT",
    "TR_OPERATOR_REQUESTS_TOPIC",
    "TR_OPERATOR_CONSUMER_GROUP",
}
# Read by `ticket-rush create-admin` straight from the environment (app/cli.py), not a Setting.
NON_SETTING_ENV = {"TR_ADMIN_PASSWORD"}
SETTING_ENV = {f"TR_{name.upper()}" for name in Settings.model_fields}


def find(objects: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_specs(objects: list[Manifest]) -> list[tuple[Manifest, dict[str, Any]]]:
    return [(o, o["spec"]["template"]["spec"]) for o in objects if o["kind"] in WORKLOAD_KINDS]


def config_data(objects: list[Manifest], release: str = "ticket-rush") -> dict[str, str]:
    data = one(objects, "ConfigMap", f"{release}-config")["data"]
    assert isinstance(data, dict)
    return data


def values_of(name: str) -> dict[str, Any]:
    """A value set merged over values.yaml (dicts merge, everything else replaces)."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        merged = dict(base)
        for key, value in over.items():
            both = isinstance(value, dict) and isinstance(base.get(key), dict)
            merged[key] = merge(base[key], value) if both else value
        return merged

    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    return merge(defaults, copy.deepcopy(VALUE_SETS[name]))


def checkout_enabled(name: str) -> bool:
    return bool(values_of(name)["apiCheckout"]["enabled"])


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(
    request: pytest.FixtureRequest, chart: helm_python.Chart
) -> tuple[str, list[Manifest]]:
    return request.param, render(chart, copy.deepcopy(VALUE_SETS[request.param]))


def test_lint_is_clean() -> None:
    for values in ({}, VALUE_SETS["prod-like"], VALUE_SETS["minimal"]):
        result = helm_python.lint(
            CHART_DIR, copy.deepcopy(values), strict=True, kube_version="v1.30.0"
        )
        assert result["errors"] == []
        # Severity 1 is INFO; the only one allowed is Helm's icon recommendation.
        problems = [m for m in result["messages"] if m["severity"] > 1 or "icon" not in m["error"]]
        assert problems == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_matches_the_kubernetes_schema(
    rendered: tuple[str, list[Manifest]], kube_version: str
) -> None:
    _, objects = rendered
    assert len(objects) >= 8
    custom = []
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert key in CUSTOM_KINDS, f"no schema at all for {key}: removed or misspelt API"
            custom.append(obj)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {exc.path}")
    for obj in custom:
        assert obj["kind"] == "ServiceMonitor" and obj["spec"]["endpoints"]


def test_value_sets_render_what_they_say(chart: helm_python.Chart) -> None:
    kinds = {
        name: sorted({o["kind"] for o in render(chart, copy.deepcopy(values))})
        for name, values in VALUE_SETS.items()
    }
    assert "ServiceMonitor" not in kinds["defaults"]
    assert "ServiceMonitor" in kinds["servicemonitor-on"]
    assert "HorizontalPodAutoscaler" in kinds["defaults"]
    assert "HorizontalPodAutoscaler" not in kinds["hpa-off"]
    assert "Secret" not in kinds["defaults"]  # existingSecret
    assert "Secret" in kinds["inline-secrets"]
    assert set(kinds["minimal"]) == {"ConfigMap", "Deployment", "Service", "ServiceAccount"}
    assert "Ingress" not in kinds["defaults"]
    for name in ("ingress-on", "ingress-checkout-off", "prod-like"):
        assert "Ingress" in kinds[name], name
    for name in VALUE_SETS:
        deployments = {
            d["metadata"]["name"]
            for d in find(render(chart, copy.deepcopy(VALUE_SETS[name])), "Deployment")
        }
        assert ("ticket-rush-api-checkout" in deployments) is checkout_enabled(name), name
        assert "ticket-rush-api" in deployments


def test_component_names_follow_the_contract(chart: helm_python.Chart) -> None:
    for release in ("ticket-rush", "rush-prod"):
        objects = render(chart, release=release)
        deployments = {d["metadata"]["name"] for d in find(objects, "Deployment")}
        assert deployments == {f"{release}-{c}" for c in [*APP_COMPONENTS, "operator"]}, deployments
        operator = one(objects, "Deployment", f"{release}-operator")
        env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["TR_OPERATOR_CONSUMER_DEPLOYMENT"]["value"] == f"{release}-booking-consumer"
        assert env["TR_OPERATOR_API_URL"]["value"] == f"http://{release}-api:8000"


def test_env_names_are_real_settings(rendered: tuple[str, list[Manifest]]) -> None:
    _, objects = rendered
    names = set(config_data(objects))
    for _obj, spec in pod_specs(objects):
        for container in spec["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
    names.discard("POD_NAMESPACE")
    unknown = {n for n in names - SETTING_ENV - NON_SETTING_ENV if not n.startswith("TR_OPERATOR_")}
    assert unknown == set(), f"not fields of app.core.config.Settings: {unknown}"


def test_the_app_parses_the_rendered_config(
    rendered: tuple[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, objects = rendered
    for key, value in config_data(objects).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    values = VALUE_SETS[name]
    topics = values.get("kafka", {}).get("topics", {"booking-requests": 12})
    assert settings.kafka_topics["booking-requests"] == topics["booking-requests"]
    assert settings.api_host == "0.0.0.0"
    checks = [
        ("admission", settings.admission_metrics_port),
        ("booking-consumer", settings.booking_consumer_metrics_port),
        ("api", settings.api_port),
    ]
    if checkout_enabled(name):
        checks.append(("api-checkout", settings.api_port))
    for container_name, port in checks:
        deployment = one(objects, "Deployment", f"ticket-rush-{container_name}")
        ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert [p["containerPort"] for p in ports] == [port]


def test_operator_env_matches_the_contract(rendered: tuple[str, list[Manifest]]) -> None:
    _, objects = rendered
    operators = find(objects, "Deployment", "ticket-rush-operator")
    if not operators:
        return
    container = operators[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"] for e in container["env"]}
    assert env - {"POD_NAMESPACE"} == OPERATOR_ENV
    assert container["command"] == [
        "kopf",
        "run",
        "--standalone",
        "--namespace=$(POD_NAMESPACE)",
        "--liveness=http://0.0.0.0:8080/healthz",
        "-m",
        "ticket_rush_operator.handlers",
    ]
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert {p["name"]: p["containerPort"] for p in container["ports"]}[probe["port"]] == 8080


def test_operator_role_is_exactly_the_contract(rendered: tuple[str, list[Manifest]]) -> None:
    _, objects = rendered
    if not find(objects, "Deployment", "ticket-rush-operator"):
        assert not find(objects, "Role")
        return
    assert find(objects, "ClusterRole") == [] and find(objects, "ClusterRoleBinding") == []
    role = one(objects, "Role", "ticket-rush-operator")
    assert role["rules"] == CONTRACT_ROLE_RULES
    binding = one(objects, "RoleBinding", "ticket-rush-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "ticket-rush-operator",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ticket-rush-operator", "namespace": NAMESPACE}
    ]
    spec = one(objects, "Deployment", "ticket-rush-operator")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "ticket-rush-operator"
    for obj, pod in pod_specs(objects):
        if obj["metadata"]["name"] != "ticket-rush-operator":
            assert pod["automountServiceAccountToken"] is False, obj["metadata"]["name"]


def _services(objects: list[Manifest]) -> dict[str, Manifest]:
    return {s["metadata"]["name"]: s for s in find(objects, "Service")}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_services_select_pods_and_target_real_ports(rendered: tuple[str, list[Manifest]]) -> None:
    _, objects = rendered
    deployments = find(objects, "Deployment")
    for service in _services(objects).values():
        targets = [
            d
            for d in deployments
            if _selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(targets) == 1, service["metadata"]["name"]
        container_ports = {
            p["name"]: p["containerPort"]
            for c in targets[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, service["metadata"]["name"]
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(deployment["spec"]["selector"]["matchLabels"], labels)


def test_probes_point_at_declared_ports(rendered: tuple[str, list[Manifest]]) -> None:
    _, objects = rendered
    for _obj, spec in pod_specs(objects):
        for container in spec["containers"]:
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["port"] in ports
    api = one(objects, "Deployment", "ticket-rush-api")["spec"]["template"]["spec"]
    container = api["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for worker in ("admission", "booking-consumer"):
        pod = one(objects, "Deployment", f"ticket-rush-{worker}")["spec"]["template"]["spec"]
        assert pod["containers"][0]["livenessProbe"]["httpGet"] == {
            "path": "/metrics",
            "port": "metrics",
        }


def test_urls_in_env_name_rendered_services(rendered: tuple[str, list[Manifest]]) -> None:
    name, objects = rendered
    services = _services(objects)
    urls = {k: v for k, v in config_data(objects).items() if k.endswith("_URL")}
    for _, spec in pod_specs(objects):
        for container in spec["containers"]:
            urls |= {
                e["name"]: e["value"]
                for e in container.get("env", [])
                if "value" in e and e["name"].endswith("_URL")
            }
    external = set(VALUE_SETS[name].get("config", {}).get("extra", {}).values())
    checked = 0
    for url in urls.values():
        if url in external:
            continue
        parts = urlsplit(url)
        assert parts.hostname in services, url
        assert parts.port in [p["port"] for p in services[parts.hostname]["spec"]["ports"]], url
        checked += 1
    # TR_PAYMENTS_URL and TR_OPERATOR_API_URL; "minimal" has neither the simulator nor the operator.
    assert checked == (0 if name == "minimal" else 2)


def test_consumers_never_exceed_partitions(
    rendered: tuple[str, list[Manifest]], chart: helm_python.Chart
) -> None:
    _, objects = rendered
    partitions = json.loads(config_data(objects)["TR_KAFKA_TOPICS"])["booking-requests"]
    consumer = one(objects, "Deployment", "ticket-rush-booking-consumer")
    assert 1 <= consumer["spec"]["replicas"] <= partitions
    too_many = {
        "kafka": {
            "topics": {"booking-requests": 4, "booking-results": 2, "booking-requests.dlq": 1}
        },
        "bookingConsumer": {"replicas": 5},
    }
    with pytest.raises(
        helm_python.HelmRenderError,
        match=r"bookingConsumer.replicas \(5\) must not exceed the booking-requests partitions \(kafka.topics.booking-requests = 4\)",
    ):
        render(chart, too_many)


def test_no_secret_value_outside_secrets(chart: helm_python.Chart) -> None:
    for name in ("inline-secrets", "prod-like"):
        objects = render(chart, copy.deepcopy(VALUE_SETS[name]))
        for obj in objects:
            text = json.dumps(obj)
            leaked = [s for s in SECRET_VALUES if s in text]
            if obj["kind"] == "Secret":
                assert leaked, "the Secret carries the values"
            else:
                assert leaked == [], f"{obj['kind']}/{obj['metadata']['name']} leaks a secret"
        secret = one(objects, "Secret", "ticket-rush-secrets")
        for _, spec in pod_specs(objects):
            for container in spec["containers"]:
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] in one(objects, "Secret", ref["name"])["stringData"]
        assert set(secret["stringData"]) == {
            "TR_DATABASE_URL",
            "TR_REDIS_URL",
            "TR_JWT_SECRET",
            "TR_OPERATOR_ADMIN_EMAIL",
            "TR_OPERATOR_ADMIN_PASSWORD",
        }


def test_existing_secret_is_referenced_not_rendered(chart: helm_python.Chart) -> None:
    objects = render(chart, {"secrets": {"existingSecret": "platform-secrets"}})
    assert find(objects, "Secret") == []
    refs = {
        env["valueFrom"]["secretKeyRef"]["name"]
        for _, spec in pod_specs(objects)
        for container in spec["containers"]
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert refs == {"platform-secrets"}


def test_pods_are_locked_down(rendered: tuple[str, list[Manifest]]) -> None:
    _, objects = rendered
    for obj, spec in pod_specs(objects):
        label = obj["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, label
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        tmp = [v for v in spec["volumes"] if v["name"] == "tmp"]
        assert tmp and "emptyDir" in tmp[0]
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, label
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["resources"]["requests"]["cpu"]
            assert container["resources"]["limits"]["memory"]


def test_availability_objects(rendered: tuple[str, list[Manifest]]) -> None:
    name, objects = rendered
    pdbs = find(objects, "PodDisruptionBudget")
    if name == "minimal":
        assert pdbs == []
        return
    deployments = find(objects, "Deployment")
    for pdb in pdbs:
        matched = [
            d
            for d in deployments
            if _selects(
                pdb["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        assert len(matched) == 1
    covered = {p["metadata"]["name"] for p in pdbs}
    expected = ["api", "admission", "booking-consumer"]
    if checkout_enabled(name):
        expected.append("api-checkout")
    assert {f"ticket-rush-{c}" for c in expected} <= covered
    assert ("ticket-rush-api-checkout" in covered) is checkout_enabled(name)
    for deployment in deployments:
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        for constraint in spread:
            assert _selects(
                constraint["labelSelector"]["matchLabels"],
                deployment["spec"]["template"]["metadata"]["labels"],
            )
    values = values_of(name)
    hpas = {h["metadata"]["name"]: h for h in find(objects, "HorizontalPodAutoscaler")}
    for component, key in (("api", "api"), ("api-checkout", "apiCheckout")):
        if component == "api-checkout" and not values[key]["enabled"]:
            assert "ticket-rush-api-checkout" not in hpas
            continue
        deployment = one(objects, "Deployment", f"ticket-rush-{component}")
        scaling = values[key]["autoscaling"]
        if scaling["enabled"]:
            hpa = hpas.pop(f"ticket-rush-{component}")
            assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
            assert hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"ticket-rush-{component}",
            }
            bounds = (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
            assert bounds == (scaling["minReplicas"], scaling["maxReplicas"])
        else:
            assert deployment["spec"]["replicas"] == values[key]["replicas"]
    assert hpas == {}, f"HPAs of nothing: {sorted(hpas)}"


@pytest.mark.parametrize("value_set", ["prod-like", "checkout-off"])
def test_service_monitors_scrape_every_metrics_port(
    chart: helm_python.Chart, value_set: str
) -> None:
    objects = render(chart, copy.deepcopy(VALUE_SETS[value_set]))
    services = _services(objects)
    monitors = find(objects, "ServiceMonitor")
    expected = {
        "ticket-rush-api",
        "ticket-rush-admission-metrics",
        "ticket-rush-booking-consumer-metrics",
    }
    if checkout_enabled(value_set):
        expected.add("ticket-rush-api-checkout")
    assert len(monitors) == len(expected)
    labels = values_of(value_set)["serviceMonitor"]["labels"]
    scraped = set()
    for monitor in monitors:
        assert labels.items() <= monitor["metadata"]["labels"].items()
        selected = [
            s
            for s in services.values()
            if _selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert len(selected) == 1, monitor["metadata"]["name"]
        port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
        scraped.add(selected[0]["metadata"]["name"])
    assert scraped == expected


def _pod_labels(deployment: Manifest) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _as_api(value: Any) -> Any:
    """The checkout pod spec with its own names put back to the api's."""
    if isinstance(value, dict):
        return {k: _as_api(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_api(v) for v in value]
    return "api" if value == "api-checkout" else value


def test_checkout_is_the_api_in_its_own_pods(rendered: tuple[str, list[Manifest]]) -> None:
    name, objects = rendered
    if not checkout_enabled(name):
        assert find(objects, "Deployment", "ticket-rush-api-checkout") == []
        assert find(objects, "Service", "ticket-rush-api-checkout") == []
        return
    values = values_of(name)
    api = one(objects, "Deployment", "ticket-rush-api")["spec"]["template"]
    checkout = one(objects, "Deployment", "ticket-rush-api-checkout")["spec"]["template"]
    (api_container,) = api["spec"]["containers"]
    (container,) = checkout["spec"]["containers"]
    assert container["command"] == ["python", "-m", "app.api"] == api_container["command"]
    assert container["name"] == "api-checkout"
    assert container["image"] == api_container["image"]
    # The same ConfigMap and Secret keys; only the worker count is its own (env beats envFrom).
    assert container["envFrom"] == api_container["envFrom"]
    workers = {"name": "TR_API_WORKERS", "value": str(values["apiCheckout"]["workers"])}
    assert container["env"] == [*api_container["env"], workers]
    assert config_data(objects)["TR_API_WORKERS"] == str(values["api"]["workers"])
    assert container["resources"] == values["apiCheckout"]["resources"]
    # Everything else (probes, ports, securityContext, /tmp, spread, service account, pod
    # annotations) is the api's, with the component's own labels in the spread selectors.
    same = ("env", "resources")
    assert _as_api({k: v for k, v in container.items() if k not in same}) == {
        k: v for k, v in api_container.items() if k not in same
    }
    assert _as_api({**checkout["spec"], "containers": []}) == {**api["spec"], "containers": []}
    assert checkout["metadata"]["annotations"] == api["metadata"]["annotations"]
    assert checkout["metadata"]["labels"]["app.kubernetes.io/component"] == "api-checkout"


def test_checkout_settings_parse_to_its_own_workers(
    rendered: tuple[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkout container's environment, built as the kubelet does (envFrom, then env)."""
    name, objects = rendered
    if not checkout_enabled(name):
        return
    container = one(objects, "Deployment", "ticket-rush-api-checkout")["spec"]["template"]
    env = dict(config_data(objects))
    env |= {
        e["name"]: e["value"] for e in container["spec"]["containers"][0]["env"] if "value" in e
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.api_workers == values_of(name)["apiCheckout"]["workers"]
    ports = container["spec"]["containers"][0]["ports"]
    assert [p["containerPort"] for p in ports] == [settings.api_port]


def test_api_and_checkout_services_select_only_their_own_pods(
    rendered: tuple[str, list[Manifest]],
) -> None:
    name, objects = rendered
    if not checkout_enabled(name):
        return
    services = _services(objects)
    api_pods = _pod_labels(one(objects, "Deployment", "ticket-rush-api"))
    checkout_pods = _pod_labels(one(objects, "Deployment", "ticket-rush-api-checkout"))
    api_selector = services["ticket-rush-api"]["spec"]["selector"]
    checkout_selector = services["ticket-rush-api-checkout"]["spec"]["selector"]
    assert _selects(api_selector, api_pods) and not _selects(api_selector, checkout_pods)
    assert _selects(checkout_selector, checkout_pods) and not _selects(checkout_selector, api_pods)
    # Nor do the Deployments' own selectors overlap: each ReplicaSet owns only its pods.
    api_match = one(objects, "Deployment", "ticket-rush-api")["spec"]["selector"]["matchLabels"]
    assert not _selects(api_match, checkout_pods)
    port = services["ticket-rush-api-checkout"]["spec"]["ports"]
    assert [p["port"] for p in port] == [values_of(name)["apiCheckout"]["service"]["port"]]


def _prefix_matches(prefix: str, path: str) -> bool:
    """Kubernetes `Prefix`: element-wise on `/`."""
    prefix = prefix.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def route(ingress: Manifest, path: str) -> tuple[str, int]:
    """The backend (Service, port) ingress-nginx picks for a request path. Without use-regex:
    the longest matching Prefix path. With it, ingress-nginx makes every path of the host a
    case-insensitive regex location `~* "^<path>"`, longest path first, first match wins."""
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]
    annotations = ingress["metadata"].get("annotations", {})
    if annotations.get("nginx.ingress.kubernetes.io/use-regex") == "true":
        ordered = sorted(paths, key=lambda p: len(p["path"]), reverse=True)
        chosen = next(p for p in ordered if re.match(p["path"], path, re.IGNORECASE))
    else:
        assert {p["pathType"] for p in paths} == {"Prefix"}, "regex paths need use-regex"
        matching = [p for p in paths if _prefix_matches(p["path"], path)]
        chosen = max(matching, key=lambda p: len(p["path"]))
    service = chosen["backend"]["service"]
    return service["name"], service["port"]["number"]


# Request path -> served by checkout with Prefix paths only, and with ingress.regexPaths.
ROUTES = {
    "/bookings/requests/0b9e1c52-3f0f-4c2e-9a53-5d8c4b7e2a11": (True, True),
    "/bookings/42/pay": (True, True),
    "/bookings/42": (True, True),
    "/concerts/7/seats": (False, True),
    "/concerts/7/bookings": (False, True),
    "/concerts/7/seats:generate": (False, False),
    "/concerts/7": (False, False),
    "/concerts": (False, False),
    "/sales/7/queue": (False, False),
    "/sales/7/queue/me": (False, False),
    "/auth/login": (False, False),
    "/users/me/bookings": (False, False),
    "/": (False, False),
}


def test_ingress_sends_checkout_calls_to_the_checkout_service(
    rendered: tuple[str, list[Manifest]],
) -> None:
    name, objects = rendered
    ingress_values = values_of(name)["ingress"]
    ingresses = find(objects, "Ingress")
    if not ingress_values["enabled"]:
        assert ingresses == []
        return
    (ingress,) = ingresses
    services = _services(objects)
    (rule,) = ingress["spec"]["rules"]
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        assert backend["name"] in services, backend
        ports = [p["port"] for p in services[backend["name"]]["spec"]["ports"]]
        assert backend["port"]["number"] in ports, backend
    api = ("ticket-rush-api", values_of(name)["api"]["service"]["port"])
    checkout = api
    if checkout_enabled(name):
        checkout = ("ticket-rush-api-checkout", values_of(name)["apiCheckout"]["service"]["port"])
    by_path = {p["path"]: p for p in rule["http"]["paths"]}
    assert by_path["/bookings"]["pathType"] == "Prefix"
    assert route(ingress, "/bookings/1/pay") == checkout
    assert route(ingress, "/") == api
    regex = ingress_values["regexPaths"]
    annotations = ingress["metadata"].get("annotations", {})
    assert ("nginx.ingress.kubernetes.io/use-regex" in annotations) is regex
    assert ingress_values["annotations"].items() <= annotations.items()
    assert any(p["pathType"] == "ImplementationSpecific" for p in by_path.values()) is regex
    for path, (prefix_only, with_regex) in ROUTES.items():
        to_checkout = with_regex if regex else prefix_only
        assert route(ingress, path) == (checkout if to_checkout else api), path
    if ingress_values["className"]:
        assert ingress["spec"]["ingressClassName"] == ingress_values["className"]
    else:
        assert "ingressClassName" not in ingress["spec"]
    if ingress_values["host"]:
        assert rule["host"] == ingress_values["host"]
    else:
        assert "host" not in rule
    if ingress_values["tls"]:
        assert ingress["spec"]["tls"] == [
            {"hosts": [ingress_values["host"]], "secretName": ingress_values["tls"]}
        ]
    else:
        assert "tls" not in ingress["spec"]


def test_ingress_routes_to_api_when_checkout_is_off(chart: helm_python.Chart) -> None:
    for regex in (False, True):
        on = render(chart, {"ingress": {"enabled": True, "regexPaths": regex}})
        off = render(
            chart,
            {"ingress": {"enabled": True, "regexPaths": regex}, "apiCheckout": {"enabled": False}},
        )
        assert route(one(on, "Ingress", "ticket-rush-api"), "/bookings/1/pay") == (
            "ticket-rush-api-checkout",
            8000,
        )
        ingress = one(off, "Ingress", "ticket-rush-api")
        assert {route(ingress, path) for path in ROUTES} == {("ticket-rush-api", 8000)}


def test_migration_job_is_a_hook_running_migrate(chart: helm_python.Chart) -> None:
    for values in ({}, {"secrets": INLINE_SECRETS}):
        objects = render(chart, copy.deepcopy(values))
        job = one(objects, "Job", "ticket-rush-migrate")
        hooks = job["metadata"]["annotations"]
        assert hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][0].startswith("ticket-rush migrate && ticket-rush create-admin")
        refs = {
            e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
        }
        (secret_name,) = refs
        if values:
            # Hook-scoped copy: hooks run before the release's own Secret exists.
            secret = one(objects, "Secret", secret_name)
            assert secret["metadata"]["annotations"]["helm.sh/hook"] == hooks["helm.sh/hook"]
            assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
                hooks["helm.sh/hook-weight"]
            )
        else:
            assert secret_name == "ticket-rush-app"


BAD_VALUES = [
    ({"api": {"replicas": -1}}, "at '/api/replicas': minimum: got -1, want 0"),
    ({"image": {"repository": ""}}, "at '/image/repository': minLength: got 0, want 1"),
    ({"image": {"repository": None}}, "at '/image': missing property 'repository'"),
    ({"operator": {"image": {"tag": None}}}, "at '/operator/image': missing property 'tag'"),
    ({"image": {"tag": ""}}, "at '/image/tag': minLength: got 0, want 1"),
    (
        {"bookingConsumer": {"replicas": -3}},
        "at '/bookingConsumer/replicas': minimum: got -3, want 0",
    ),
    (
        {"kafka": {"topics": {"booking-requests": 0}}},
        "at '/kafka/topics/booking-requests': minimum: got 0, want 1",
    ),
    ({"kafka": {"bootstrap": "kafka bootstrap"}}, "at '/kafka/bootstrap'"),
    ({"secrets": {"existingSecret": ""}}, "at '/secrets/jwtSecret': minLength: got 0, want 32"),
    (
        {"secrets": {**INLINE_SECRETS, "databaseUrl": "postgresql://u:p@db/x"}},
        "at '/secrets/databaseUrl'",
    ),
    ({"config": {"extra": {"TR_JWT_SECRET": "x"}}}, "invalid propertyName 'TR_JWT_SECRET'"),
    (
        {"config": {"extra": {"not_a_setting": "x"}}},
        "'not_a_setting' does not match pattern '^TR_[A-Z0-9_]+$'",
    ),
    (
        {"podSecurityContext": {"runAsNonRoot": False, "runAsUser": 0}},
        "at '/podSecurityContext/runAsNonRoot'",
    ),
    (
        {"securityContext": {"readOnlyRootFilesystem": False}},
        "at '/securityContext/readOnlyRootFilesystem'",
    ),
    ({"api": {"replicaCount": 3}}, "at '/api': additional properties 'replicaCount' not allowed"),
    (
        {"api": {"service": {"nodePort": 80}}},
        "at '/api/service/nodePort': minimum: got 80, want 30,000",
    ),
    ({"apiCheckout": {"replicas": 0}}, "at '/apiCheckout/replicas': minimum: got 0, want 1"),
    ({"apiCheckout": {"replicas": -2}}, "at '/apiCheckout/replicas': minimum: got -2, want 1"),
    ({"apiCheckout": {"workers": 0}}, "at '/apiCheckout/workers': minimum: got 0, want 1"),
    ({"apiCheckout": {"enabled": "yes"}}, "at '/apiCheckout/enabled': got string, want boolean"),
    (
        {"apiCheckout": {"service": {"port": 70000}}},
        "at '/apiCheckout/service/port': maximum: got 70,000, want 65,535",
    ),
    (
        {"apiCheckout": {"autoscaling": {"minReplicas": 0}}},
        "at '/apiCheckout/autoscaling/minReplicas': minimum: got 0, want 1",
    ),
    ({"apiCheckout": None}, "missing property 'apiCheckout'"),
    (
        {"ingress": {"enabled": True, "tls": "tickets-tls"}},
        "at '/ingress/host': minLength: got 0, want 1",
    ),
    ({"ingress": {"host": "https://tickets.example/"}}, "at '/ingress/host'"),
    ({"ingress": {"className": "Nginx"}}, "at '/ingress/className'"),
    ({"ingress": {"paths": []}}, "at '/ingress': additional properties 'paths' not allowed"),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_values_schema_rejects_bad_values(
    chart: helm_python.Chart, values: dict[str, Any], message: str
) -> None:
    # What `helm install` does: merge over values.yaml (null deletes a key), then validate.
    with pytest.raises(helm_python.HelmValuesError) as raised:
        render(chart, copy.deepcopy(values))
    assert message in str(raised.value)


@pytest.mark.parametrize("key", ["api", "apiCheckout"])
def test_hpa_bounds_are_checked(chart: helm_python.Chart, key: str) -> None:
    with pytest.raises(
        helm_python.HelmRenderError,
        match=rf"{key}.autoscaling.minReplicas \(5\) must not exceed {key}.autoscaling.maxReplicas \(2\)",
    ):
        render(chart, {key: {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}})


def test_crd_is_in_the_chart_and_valid(chart: helm_python.Chart) -> None:
    crd = load_crd()
    assert [c for c in chart.crds if "concertsale" in str(c)], "crds/concertsale.yaml is packaged"
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(crd, version, strict=True)
    assert crd["spec"]["group"] == "ticketrush.io"
    assert crd["spec"]["names"]["plural"] == "concertsales"
    served = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    assert served and "status" in served[0]["subresources"]


def concertsale_validator() -> jsonschema.Draft4Validator:
    """The CRD's structural schema (OpenAPI 3.0: draft-4 style boolean exclusiveMinimum).
    CEL `x-kubernetes-validations` are the API server's; they are not evaluated here."""
    crd = load_crd()
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft4Validator(version["schema"]["openAPIV3Schema"])


def test_example_concertsale_matches_the_crd_schema() -> None:
    validator = concertsale_validator()
    example = yaml.safe_load((PROJECT_ROOT / "examples" / "concertsale.yaml").read_text())
    assert (example["apiVersion"], example["kind"]) == ("ticketrush.io/v1", "ConcertSale")
    validator.validate(example)
    broken = copy.deepcopy(example)
    del broken["spec"]["concertId"]
    assert [e.message for e in validator.iter_errors(broken)] == [
        "'concertId' is a required property"
    ]
    broken = copy.deepcopy(example)
    broken["spec"]["admission"]["minRate"] = 0
    assert not validator.is_valid(broken)


def test_operator_env_names_are_operator_settings(chart: helm_python.Chart) -> None:
    """Against the operator's own settings class once the operator package is in the tree."""
    settings_file = PROJECT_ROOT / "operator" / "ticket_rush_operator" / "settings.py"
    if not settings_file.exists():
        pytest.skip("operator/ticket_rush_operator arrives with the k8s-operator branch")
    import importlib.util

    spec = importlib.util.spec_from_file_location("_operator_settings", settings_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fields = {f"TR_OPERATOR_{name.upper()}" for name in module.OperatorSettings.model_fields}
    operator = one(render(chart), "Deployment", "ticket-rush-operator")
    env = {e["name"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env - {"POD_NAMESPACE"} <= fields
