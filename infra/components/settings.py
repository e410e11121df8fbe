"""Stack configuration (`Pulumi.<stack>.yaml`) as one typed object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

INFRA_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = INFRA_DIR.parent
CHART_DIR = REPO_ROOT / "helm" / "ticket-rush"
DEFAULT_DASHBOARDS_DIR = REPO_ROOT / "dashboards"
# The cluster's nginx-rtmp config; point `nginxRtmpConfig` at another file to replace it.
DEFAULT_NGINX_RTMP_CONFIG = INFRA_DIR / "streaming" / "nginx-rtmp.conf"
REQUIRED_TOPICS = ("booking-requests", "booking-results", "booking-requests.dlq")


@dataclass(frozen=True)
class ChartVersions:
    """Pinned third-party charts (bump deliberately, one at a time)."""

    cloudnative_pg: str = "0.29.0"
    strimzi: str = "0.51.0"
    kube_prometheus_stack: str = "81.6.2"


@dataclass(frozen=True)
class PlatformSecrets:
    jwt_secret: pulumi.Output[str]
    db_password: pulumi.Output[str]
    redis_password: pulumi.Output[str]
    operator_admin_password: pulumi.Output[str]


@dataclass(frozen=True)
class PlatformConfig:
    secrets: PlatformSecrets
    operator_admin_email: str
    namespace: str = "ticket-rush"
    release_name: str = "ticket-rush"
    image_repository: str = "ghcr.io/ticket-rush/app"
    image_tag: str = "0.1.0"
    operator_image_repository: str = "ghcr.io/ticket-rush/operator"
    operator_image_tag: str = "0.1.0"
    image_pull_policy: str = "IfNotPresent"
    kafka_partitions: dict[str, int] = field(
        default_factory=lambda: {
            "booking-requests": 12,
            "booking-results": 6,
            "booking-requests.dlq": 1,
        }
    )
    kafka_version: str = "4.1.1"
    kafka_brokers: int = 3
    kafka_storage: str = "20Gi"
    postgres_instances: int = 1
    postgres_storage: str = "10Gi"
    redis_image: str = "docker.io/library/redis:7.4"
    redis_storage: str = "2Gi"
    api_min_replicas: int = 2
    api_max_replicas: int = 10
    # api-checkout: the admitted fans' seat map, booking and payment calls on their own pods,
    # so the waiting room's crowd cannot starve them (helm apiCheckout).
    api_checkout: bool = True
    checkout_min_replicas: int = 2
    checkout_max_replicas: int = 6
    consumer_replicas: int = 2
    # Expose the API on this node port (kind maps it to the host); None keeps it ClusterIP.
    api_node_port: int | None = None
    # An Ingress for this host (checkout routes to api-checkout); None: no Ingress.
    ingress_host: str | None = None
    ingress_class_name: str = ""
    # A kubernetes.io/tls Secret for ingress_host; "" serves plain HTTP.
    ingress_tls_secret: str = ""
    # ingress-nginx only: the seat-map and booking-creation regex paths to api-checkout too.
    ingress_regex_paths: bool = False
    monitoring: bool = True
    dashboards_dir: Path = DEFAULT_DASHBOARDS_DIR
    nginx_rtmp_config: Path = DEFAULT_NGINX_RTMP_CONFIG
    nginx_rtmp_image: str = "docker.io/alfg/nginx-rtmp:latest"
    streaming_service_type: str = "ClusterIP"
    charts: ChartVersions = field(default_factory=ChartVersions)

    def __post_init__(self) -> None:
        missing = [t for t in REQUIRED_TOPICS if t not in self.kafka_partitions]
        if missing:
            raise ValueError(f"kafkaPartitions lacks {missing}")
        if any(p < 1 for p in self.kafka_partitions.values()):
            raise ValueError("kafkaPartitions: every topic needs at least one partition")
        for name, low, high in (
            ("api", self.api_min_replicas, self.api_max_replicas),
            ("checkout", self.checkout_min_replicas, self.checkout_max_replicas),
        ):
            if not 1 <= low <= high:
                raise ValueError(f"{name}MinReplicas ({low}) must be 1..{name}MaxReplicas ({high})")
        if self.ingress_tls_secret and not self.ingress_host:
            raise ValueError("ingressTlsSecret needs ingressHost (TLS is per host)")
        if self.consumer_replicas > self.kafka_partitions["booking-requests"]:
            raise ValueError(
                f"consumerReplicas ({self.consumer_replicas}) exceeds the booking-requests "
                f"partitions ({self.kafka_partitions['booking-requests']})"
            )

    @property
    def topic_replicas(self) -> int:
        return min(3, self.kafka_brokers)


# Stack config key -> PlatformConfig field, by kind.
_STRINGS = {
    "namespace": "namespace",
    "imageRepository": "image_repository",
    "imageTag": "image_tag",
    "operatorImageRepository": "operator_image_repository",
    "operatorImageTag": "operator_image_tag",
    "imagePullPolicy": "image_pull_policy",
    "kafkaVersion": "kafka_version",
    "kafkaStorage": "kafka_storage",
    "postgresStorage": "postgres_storage",
    "redisImage": "redis_image",
    "redisStorage": "redis_storage",
    "nginxRtmpImage": "nginx_rtmp_image",
    "streamingServiceType": "streaming_service_type",
    "ingressHost": "ingress_host",
    "ingressClassName": "ingress_class_name",
    "ingressTlsSecret": "ingress_tls_secret",
}
_INTS = {
    "kafkaBrokers": "kafka_brokers",
    "postgresInstances": "postgres_instances",
    "apiMinReplicas": "api_min_replicas",
    "apiMaxReplicas": "api_max_replicas",
    "consumerReplicas": "consumer_replicas",
    "apiNodePort": "api_node_port",
    "checkoutMinReplicas": "checkout_min_replicas",
    "checkoutMaxReplicas": "checkout_max_replicas",
}
_BOOLS = {
    "monitoring": "monitoring",
    "apiCheckout": "api_checkout",
    "ingressRegexPaths": "ingress_regex_paths",
}
_PATHS = {"dashboardsDir": "dashboards_dir", "nginxRtmpConfig": "nginx_rtmp_config"}


def load_config(config: pulumi.Config | None = None) -> PlatformConfig:
    """Read the stack's `ticket-rush:*` settings; secrets stay Pulumi secrets.

    Relative paths are relative to infra/ (where `pulumi up` runs)."""
    cfg = config or pulumi.Config()
    overrides: dict[str, Any] = {}
    for key, name in _STRINGS.items():
        if (text := cfg.get(key)) is not None:
            overrides[name] = text
    for key, name in _INTS.items():
        if (number := cfg.get_int(key)) is not None:
            overrides[name] = number
    for key, name in _PATHS.items():
        if (text := cfg.get(key)) is not None:
            path = Path(text)
            overrides[name] = path if path.is_absolute() else INFRA_DIR / path
    for key, name in _BOOLS.items():
        if (flag := cfg.get_bool(key)) is not None:
            overrides[name] = flag
    if (partitions := cfg.get_object("kafkaPartitions")) is not None:
        if not isinstance(partitions, dict):
            raise ValueError("kafkaPartitions must map topic names to partition counts")
        overrides["kafka_partitions"] = {str(k): int(v) for k, v in partitions.items()}
    return PlatformConfig(
        secrets=PlatformSecrets(
            jwt_secret=cfg.require_secret("jwtSecret"),
            db_password=cfg.require_secret("dbPassword"),
            redis_password=cfg.require_secret("redisPassword"),
            operator_admin_password=cfg.require_secret("operatorAdminPassword"),
        ),
        operator_admin_email=cfg.require("operatorAdminEmail"),
        **overrides,
    )
