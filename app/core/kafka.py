"""The process-wide Kafka producer, started in the lifespan and retried in the background."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from app.core.config import Settings
from app.core.metrics import KAFKA_PRODUCE_LATENCY
from app.core.tasks import stop_task

log = structlog.get_logger(__name__)


def time_ack(ack: asyncio.Future[Any], topic: str) -> asyncio.Future[Any]:
    """Record the time from now until the broker acknowledges `ack` (a `producer.send` result)."""
    started = time.perf_counter()

    def done(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            KAFKA_PRODUCE_LATENCY.labels(topic).observe(time.perf_counter() - started)

    ack.add_done_callback(done)
    return ack


class KafkaProducerResource:
    """Owns one AIOKafkaProducer.

    The API must start even when the broker is briefly unreachable (readiness reports it), so
    connecting is retried in the background instead of failing the lifespan.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.producer is not None

    async def start(self) -> None:
        if not await self._try_start():
            self._task = asyncio.create_task(self._retry_forever())

    async def _try_start(self) -> bool:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            # The Tansu broker (and our exactly-once design) rely on DB idempotency instead.
            enable_idempotence=False,
            acks="all",
            linger_ms=5,
            request_timeout_ms=10_000,
        )
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            log.warning(
                "kafka_unavailable", bootstrap=self._settings.kafka_bootstrap, error=str(exc)
            )
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self.producer = producer
        return True

    async def _retry_forever(self) -> None:
        delay = 1.0
        while not await self._try_start():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def ping(self) -> bool:
        if self.producer is None:
            return False
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout=2.0)
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task, name="kafka_connect")
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
