"""The app: its Secret (from Pulumi secrets) and the `helm/ticket-rush` chart (CRD, operator)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.settings import CHART_DIR, PlatformConfig

APP_SECRET = "ticket-rush-app"  # noqa: S105 - the Secret object's name, not a value


def chart_values(config: PlatformConfig, *, kafka_bootstrap: str) -> dict[str, Any]:
    """Values for helm/ticket-rush. No secret goes in here: the chart reads them from the
    Secret this component creates (`secrets.existingSecret`)."""
    return {
        "image": {
            "repository": config.image_repository,
            "tag": config.image_tag,
            "pullPolicy": config.image_pull_policy,
        },
        "operator": {
            "enabled": True,
            "image": {
                "repository": config.operator_image_repository,
                "tag": config.operator_image_tag,
                "pullPolicy": config.image_pull_policy,
            },
        },
        "kafka": {"bootstrap": kafka_bootstrap, "topics": dict(config.kafka_partitions)},
        "secrets": {"existingSecret": APP_SECRET},
        "api": {
            "replicas": config.api_min_replicas,
            "service": (
                {"type": "NodePort", "nodePort": config.api_node_port}
                if config.api_node_port
                else {"type": "ClusterIP"}
            ),
            "autoscaling": {
                "enabled": True,
                "minReplicas": config.api_min_replicas,
                "maxReplicas": config.api_max_replicas,
            },
        },
        "apiCheckout": {
            "enabled": config.api_checkout,
            "replicas": config.checkout_min_replicas,
            "autoscaling": {
                "enabled": True,
                "minReplicas": config.checkout_min_replicas,
                "maxReplicas": config.checkout_max_replicas,
            },
        },
        "ingress": {
            "enabled": config.ingress_host is not None,
            "className": config.ingress_class_name,
            "host": config.ingress_host or "",
            "tls": config.ingress_tls_secret,
            "regexPaths": config.ingress_regex_paths,
        },
        "bookingConsumer": {"replicas": config.consumer_replicas},
        "serviceMonitor": {"enabled": config.monitoring},
        # The chart's alerts (helm/ticket-rush/rules), loaded by the same Prometheus.
        "prometheusRule": {"enabled": config.monitoring},
    }


class TicketRushApp(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: PlatformConfig,
        *,
        namespace: k8s.core.v1.Namespace,
        database_url: pulumi.Output[str],
        redis_url: pulumi.Output[str],
        kafka_bootstrap: str,
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ticket-rush:platform:TicketRushApp", name, None, opts)
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=APP_SECRET, namespace=config.namespace),
            type="Opaque",
            string_data={
                "TR_DATABASE_URL": database_url,
                "TR_REDIS_URL": redis_url,
                "TR_JWT_SECRET": config.secrets.jwt_secret,
                "TR_OPERATOR_ADMIN_EMAIL": config.operator_admin_email,
                "TR_OPERATOR_ADMIN_PASSWORD": config.secrets.operator_admin_password,
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )
        self.values = chart_values(config, kafka_bootstrap=kafka_bootstrap)
        # helm.v3.Release (not helm.v3.Chart): real Helm semantics, so the chart's crds/ are
        # installed and its pre-install/pre-upgrade migration hook runs before the new pods.
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=config.release_name,
            chart=str(CHART_DIR),
            namespace=config.namespace,
            values=self.values,
            skip_crds=False,
            wait_for_jobs=True,
            atomic=True,
            timeout=900,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[namespace, self.secret, *depends_on]
            ),
        )
        self.register_outputs({"release": config.release_name})
