"""kube-prometheus-stack (Prometheus operator, Prometheus, Grafana) and the repo's dashboards."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from components.settings import PlatformConfig

NAMESPACE = "monitoring"
# Grafana's sidecar loads every ConfigMap with this label (kube-prometheus-stack's default).
DASHBOARD_LABEL = {"grafana_dashboard": "1"}


def dashboard_files(directory: Path) -> list[Path]:
    """Every `*.json` in the directory, checked to be a JSON object (a Grafana dashboard)."""
    files = sorted(directory.glob("*.json")) if directory.is_dir() else []
    for path in files:
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"dashboard {path} is not valid JSON: {exc}") from exc
        if not isinstance(dashboard, dict) or "panels" not in dashboard:
            raise ValueError(f"dashboard {path} is not a Grafana dashboard (no panels)")
    return files


class Monitoring(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: PlatformConfig,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ticket-rush:platform:Monitoring", name, None, opts)
        self.release = k8s.helm.v3.Release(
            f"{name}-kube-prometheus-stack",
            name="kube-prometheus-stack",
            chart="kube-prometheus-stack",
            version=config.charts.kube_prometheus_stack,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(
                repo="https://prometheus-community.github.io/helm-charts"
            ),
            namespace=NAMESPACE,
            create_namespace=True,
            values={
                "prometheus": {
                    "prometheusSpec": {
                        # Scrape every ServiceMonitor/PodMonitor, not only this release's.
                        "serviceMonitorSelectorNilUsesHelmValues": False,
                        "podMonitorSelectorNilUsesHelmValues": False,
                        # ... and load every PrometheusRule (the app chart's alerts).
                        "ruleSelectorNilUsesHelmValues": False,
                    }
                },
                "grafana": {
                    "sidecar": {
                        "dashboards": {
                            "enabled": True,
                            "label": "grafana_dashboard",
                            "labelValue": "1",
                            "searchNamespace": "ALL",
                        }
                    }
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.dashboards = [
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{_slug(path.stem)}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"dashboard-{_slug(path.stem)}",
                    namespace=NAMESPACE,
                    labels=DASHBOARD_LABEL,
                ),
                data={path.name: path.read_text()},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
            )
            for path in dashboard_files(config.dashboards_dir)
        ]
        self.register_outputs(
            {"dashboards": [p.name for p in dashboard_files(config.dashboards_dir)]}
        )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50]
