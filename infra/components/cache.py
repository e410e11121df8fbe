"""Redis with AOF persistence: a one-replica StatefulSet on a PersistentVolumeClaim."""

from __future__ import annotations

from urllib.parse import quote

import pulumi
import pulumi_kubernetes as k8s

from components.settings import PlatformConfig

PORT = 6379


class RedisCache(pulumi.ComponentResource):
    """Queue, tokens, holds and rates live here. AOF (`appendfsync everysec`) bounds a crash's
    loss to about a second; what is still lost is rebuildable (docs/decisions.md)."""

    redis_url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: PlatformConfig,
        namespace: k8s.core.v1.Namespace,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ticket-rush:platform:RedisCache", name, None, opts)
        labels = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/part-of": "ticket-rush"}
        meta = k8s.meta.v1.ObjectMetaArgs(name=name, namespace=config.namespace, labels=labels)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        self.auth = k8s.core.v1.Secret(
            f"{name}-auth",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{name}-auth", namespace=config.namespace),
            string_data={"password": config.secrets.redis_password},
            opts=in_ns,
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta,
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=labels,
                ports=[k8s.core.v1.ServicePortArgs(name="redis", port=PORT, target_port="redis")],
            ),
            opts=in_ns,
        )
        self.statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=meta,
            spec=k8s.apps.v1.StatefulSetSpecArgs(
                service_name=name,
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True,
                            run_as_user=999,
                            fs_group=999,
                            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                        ),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="redis",
                                image=config.redis_image,
                                args=[
                                    "--appendonly",
                                    "yes",
                                    "--appendfsync",
                                    "everysec",
                                    "--dir",
                                    "/data",
                                    "--requirepass",
                                    "$(REDIS_PASSWORD)",
                                ],
                                env=[
                                    k8s.core.v1.EnvVarArgs(
                                        name="REDIS_PASSWORD",
                                        value_from=k8s.core.v1.EnvVarSourceArgs(
                                            secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                                                name=f"{name}-auth", key="password"
                                            )
                                        ),
                                    )
                                ],
                                ports=[
                                    k8s.core.v1.ContainerPortArgs(name="redis", container_port=PORT)
                                ],
                                readiness_probe=k8s.core.v1.ProbeArgs(
                                    tcp_socket=k8s.core.v1.TCPSocketActionArgs(port="redis"),
                                    period_seconds=5,
                                ),
                                liveness_probe=k8s.core.v1.ProbeArgs(
                                    tcp_socket=k8s.core.v1.TCPSocketActionArgs(port="redis"),
                                    period_seconds=10,
                                ),
                                security_context=k8s.core.v1.SecurityContextArgs(
                                    allow_privilege_escalation=False,
                                    read_only_root_filesystem=True,
                                    capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
                                ),
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "200m", "memory": "256Mi"},
                                    limits={"memory": "1Gi"},
                                ),
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(name="data", mount_path="/data")
                                ],
                            )
                        ],
                    ),
                ),
                volume_claim_templates=[
                    k8s.core.v1.PersistentVolumeClaimArgs(
                        metadata=k8s.meta.v1.ObjectMetaArgs(name="data"),
                        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                            access_modes=["ReadWriteOnce"],
                            resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                                requests={"storage": config.redis_storage}
                            ),
                        ),
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, self.auth]),
        )
        self.host = f"{name}.{config.namespace}.svc"
        self.redis_url = pulumi.Output.secret(
            config.secrets.redis_password.apply(
                lambda password: f"redis://:{quote(password, safe='')}@{self.host}:{PORT}/0"
            )
        )
        self.register_outputs({"host": self.host})
