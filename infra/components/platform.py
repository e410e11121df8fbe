"""`TicketRushPlatform`: everything Ticket-Rush needs in one Kubernetes cluster."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.app import TicketRushApp
from components.cache import RedisCache
from components.database import PostgresDatabase
from components.messaging import KafkaCluster
from components.monitoring import Monitoring
from components.settings import PlatformConfig
from components.streaming import NginxRtmp


class TicketRushPlatform(pulumi.ComponentResource):
    """Namespace, PostgreSQL, Redis, Kafka with its topics, monitoring with the dashboards,
    nginx-rtmp, and the app chart (which carries the ConcertSale CRD and the operator)."""

    def __init__(
        self,
        name: str,
        config: PlatformConfig,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ticket-rush:platform:TicketRushPlatform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=config.namespace,
                labels={"pod-security.kubernetes.io/enforce": "baseline"},
            ),
            opts=child,
        )
        self.database = PostgresDatabase("ticket-rush-db", config, self.namespace, opts=child)
        self.cache = RedisCache("redis", config, self.namespace, opts=child)
        self.kafka = KafkaCluster("ticket-rush", config, self.namespace, opts=child)
        self.monitoring = (
            Monitoring("monitoring", config, opts=child) if config.monitoring else None
        )
        self.streaming = NginxRtmp("nginx-rtmp", config, self.namespace, opts=child)
        backing: list[pulumi.Resource] = [
            self.database.cluster,
            self.cache.statefulset,
            self.cache.service,
            self.kafka.kafka,
            self.kafka.node_pool,
            *self.kafka.topics.values(),
        ]
        if self.monitoring is not None:
            # The chart's ServiceMonitors need the monitoring.coreos.com CRDs.
            backing.append(self.monitoring.release)
        self.app = TicketRushApp(
            "app",
            config,
            namespace=self.namespace,
            database_url=self.database.database_url,
            redis_url=self.cache.redis_url,
            kafka_bootstrap=self.kafka.bootstrap,
            depends_on=backing,
            opts=child,
        )
        self.api_url = f"http://{config.release_name}-api.{config.namespace}.svc:8000"
        self.register_outputs({"namespace": config.namespace, "api_url": self.api_url})
