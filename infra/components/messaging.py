"""Kafka in KRaft mode (no ZooKeeper) via the Strimzi operator, with the app's topics."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.settings import PlatformConfig

STRIMZI_API = "kafka.strimzi.io/v1beta2"


class KafkaCluster(pulumi.ComponentResource):
    """`Kafka` + one `KafkaNodePool` (combined controller/broker nodes) + a `KafkaTopic` per
    configured topic, partitions from the stack config (the chart gets the same numbers)."""

    def __init__(
        self,
        name: str,
        config: PlatformConfig,
        namespace: k8s.core.v1.Namespace,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ticket-rush:platform:KafkaCluster", name, None, opts)
        self.operator = k8s.helm.v3.Release(
            f"{name}-strimzi",
            name="strimzi",
            chart="oci://quay.io/strimzi-helm/strimzi-kafka-operator",
            version=config.charts.strimzi,
            namespace="strimzi-system",
            create_namespace=True,
            values={"watchNamespaces": [config.namespace]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )
        after_operator = pulumi.ResourceOptions(parent=self, depends_on=[self.operator, namespace])
        self.node_pool = k8s.apiextensions.CustomResource(
            f"{name}-pool",
            api_version=STRIMZI_API,
            kind="KafkaNodePool",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="dual-role",
                namespace=config.namespace,
                labels={"strimzi.io/cluster": name},
            ),
            spec={
                "replicas": config.kafka_brokers,
                "roles": ["controller", "broker"],
                "storage": {
                    "type": "jbod",
                    "volumes": [
                        {
                            "id": 0,
                            "type": "persistent-claim",
                            "size": config.kafka_storage,
                            "deleteClaim": False,
                            "kraftMetadata": "shared",
                        }
                    ],
                },
            },
            opts=after_operator,
        )
        replicas = config.topic_replicas
        self.kafka = k8s.apiextensions.CustomResource(
            f"{name}-kafka",
            api_version=STRIMZI_API,
            kind="Kafka",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=name,
                namespace=config.namespace,
                # Required before Strimzi 0.48, ignored after: KRaft with node pools.
                annotations={"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"},
            ),
            spec={
                "kafka": {
                    "version": config.kafka_version,
                    "listeners": [
                        {"name": "plain", "port": 9092, "type": "internal", "tls": False}
                    ],
                    "config": {
                        "offsets.topic.replication.factor": replicas,
                        "transaction.state.log.replication.factor": replicas,
                        "transaction.state.log.min.isr": max(1, replicas - 1),
                        "default.replication.factor": replicas,
                        "min.insync.replicas": max(1, replicas - 1),
                        "auto.create.topics.enable": False,
                    },
                },
                "entityOperator": {"topicOperator": {}},
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.operator, self.node_pool, namespace]
            ),
        )
        self.topics = {
            topic: k8s.apiextensions.CustomResource(
                f"{name}-topic-{topic.replace('.', '-')}",
                api_version=STRIMZI_API,
                kind="KafkaTopic",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=topic.replace(".", "-"),
                    namespace=config.namespace,
                    labels={"strimzi.io/cluster": name},
                ),
                spec={
                    "topicName": topic,
                    "partitions": partitions,
                    "replicas": replicas,
                    "config": {"min.insync.replicas": max(1, replicas - 1)},
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.kafka, self.node_pool]),
            )
            for topic, partitions in sorted(config.kafka_partitions.items())
        }
        self.bootstrap = f"{name}-kafka-bootstrap.{config.namespace}.svc:9092"
        self.register_outputs({"bootstrap": self.bootstrap})
