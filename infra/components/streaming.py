"""nginx-rtmp ingest: RTMP in, HLS out, publish callbacks to the API; config in a ConfigMap."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_kubernetes as k8s

from components.settings import PlatformConfig

RTMP_PORT = 1935
HTTP_PORT = 8080


class NginxRtmp(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: PlatformConfig,
        namespace: k8s.core.v1.Namespace,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ticket-rush:platform:NginxRtmp", name, None, opts)
        if not config.nginx_rtmp_config.is_file():
            raise ValueError(f"nginxRtmpConfig: no such file {config.nginx_rtmp_config}")
        nginx_conf = config.nginx_rtmp_config.read_text()
        labels = {
            "app.kubernetes.io/name": "nginx-rtmp",
            "app.kubernetes.io/part-of": "ticket-rush",
        }
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{name}-config", namespace=config.namespace),
            data={"nginx.conf": nginx_conf},
            opts=in_ns,
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=name, namespace=config.namespace, labels=labels
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels=labels,
                        # A config change rolls the pod (nginx reads its config at start).
                        annotations={
                            "checksum/config": hashlib.sha256(nginx_conf.encode()).hexdigest()
                        },
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="nginx-rtmp",
                                image=config.nginx_rtmp_image,
                                ports=[
                                    k8s.core.v1.ContainerPortArgs(
                                        name="rtmp", container_port=RTMP_PORT
                                    ),
                                    k8s.core.v1.ContainerPortArgs(
                                        name="http", container_port=HTTP_PORT
                                    ),
                                ],
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(
                                        name="config",
                                        mount_path="/etc/nginx/nginx.conf",
                                        sub_path="nginx.conf",
                                    ),
                                    k8s.core.v1.VolumeMountArgs(name="hls", mount_path="/srv/hls"),
                                ],
                                readiness_probe=k8s.core.v1.ProbeArgs(
                                    tcp_socket=k8s.core.v1.TCPSocketActionArgs(port="rtmp"),
                                    period_seconds=5,
                                ),
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "200m", "memory": "128Mi"},
                                    limits={"memory": "512Mi"},
                                ),
                            )
                        ],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="config",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                    name=f"{name}-config"
                                ),
                            ),
                            k8s.core.v1.VolumeArgs(
                                name="hls",
                                empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="1Gi"),
                            ),
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, self.config_map]),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=name, namespace=config.namespace, labels=labels
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                type=config.streaming_service_type,
                selector=labels,
                ports=[
                    k8s.core.v1.ServicePortArgs(name="rtmp", port=RTMP_PORT, target_port="rtmp"),
                    k8s.core.v1.ServicePortArgs(name="http", port=HTTP_PORT, target_port="http"),
                ],
            ),
            opts=in_ns,
        )
        self.register_outputs({})
