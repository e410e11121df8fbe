"""PostgreSQL: the CloudNativePG operator (its Helm chart) and one `Cluster` for the app."""

from __future__ import annotations

from urllib.parse import quote

import pulumi
import pulumi_kubernetes as k8s

from components.settings import PlatformConfig

DATABASE = "ticket_rush"
OWNER = "ticket_rush"


class PostgresDatabase(pulumi.ComponentResource):
    """A CloudNativePG cluster (primary + replicas, failover by the operator) with the app's
    database and owner; the owner's password comes from a Pulumi secret."""

    database_url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: PlatformConfig,
        namespace: k8s.core.v1.Namespace,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ticket-rush:platform:PostgresDatabase", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.operator = k8s.helm.v3.Release(
            f"{name}-cnpg",
            name="cnpg",
            chart="cloudnative-pg",
            version=config.charts.cloudnative_pg,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(
                repo="https://cloudnative-pg.github.io/charts"
            ),
            namespace="cnpg-system",
            create_namespace=True,
            wait_for_jobs=True,
            opts=child,
        )
        self.credentials = k8s.core.v1.Secret(
            f"{name}-owner",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{name}-owner", namespace=config.namespace),
            type="kubernetes.io/basic-auth",
            string_data={"username": OWNER, "password": config.secrets.db_password},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )
        self.cluster = k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version="postgresql.cnpg.io/v1",
            kind="Cluster",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=config.namespace),
            spec={
                "instances": config.postgres_instances,
                "storage": {"size": config.postgres_storage},
                "bootstrap": {
                    "initdb": {
                        "database": DATABASE,
                        "owner": OWNER,
                        "secret": {"name": f"{name}-owner"},
                    }
                },
                "postgresql": {"parameters": {"max_connections": "300"}},
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.operator, self.credentials, namespace]
            ),
        )
        # CloudNativePG's read-write Service always points at the current primary.
        self.host = f"{name}-rw.{config.namespace}.svc"
        self.database_url = pulumi.Output.secret(
            config.secrets.db_password.apply(
                lambda password: (
                    f"postgresql+asyncpg://{OWNER}:{quote(password, safe='')}"
                    f"@{self.host}:5432/{DATABASE}"
                )
            )
        )
        self.register_outputs({"host": self.host})
