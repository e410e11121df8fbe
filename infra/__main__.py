"""Ticket-Rush on Kubernetes: `pulumi up --stack kind` (or `prod`) from this directory."""

import pulumi
from components.platform import TicketRushPlatform
from components.settings import load_config

platform = TicketRushPlatform("ticket-rush", load_config())

pulumi.export("namespace", platform.namespace.metadata.name)
pulumi.export("api_url", platform.api_url)
pulumi.export("kafka_bootstrap", platform.kafka.bootstrap)
pulumi.export("database_host", platform.database.host)
