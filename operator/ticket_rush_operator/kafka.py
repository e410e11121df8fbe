"""Consumer lag of booking-requests, straight from the broker (like KEDA's Kafka scaler):
end offsets minus the group's committed offsets, summed over partitions. A partition the group
never committed counts from its earliest offset (the consumers read from the beginning)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError


@dataclass(frozen=True, slots=True)
class TopicLag:
    lag: int
    partitions: int


class LagReader:
    def __init__(self, bootstrap: str, *, topic: str, group: str, timeout_s: float) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._group = group
        self._timeout_ms = int(timeout_s * 1000)
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._offsets is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap, request_timeout_ms=self._timeout_ms
            )
            offsets = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=self._timeout_ms,
            )
            try:
                await admin.start()
                await offsets.start()
            except BaseException:
                await admin.close()
                await offsets.stop()
                raise
            self._admin, self._offsets = admin, offsets
        return self._admin, self._offsets

    async def read(self) -> TopicLag | None:
        """The lag, or None when the broker or the topic cannot be read right now."""
        try:
            # aiokafka waits for a lost broker's metadata without end: bound the whole read.
            async with asyncio.timeout(self._timeout_ms / 1000):
                return await self._read()
        except (KafkaError, OSError, TimeoutError):
            await self.close()
            return None

    async def _read(self) -> TopicLag | None:
        admin, offsets = await self._clients()
        (topic,) = await admin.describe_topics([self._topic])
        if topic.get("error_code") or not topic.get("partitions"):
            return None
        numbers = [int(p["partition"]) for p in topic["partitions"]]
        tps = [TopicPartition(self._topic, p) for p in sorted(numbers)]
        ends = await offsets.end_offsets(tps)
        starts = await offsets.beginning_offsets(tps)
        committed = await admin.list_consumer_group_offsets(self._group, partitions=tps)
        lag = 0
        for tp in tps:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            lag += max(0, ends[tp] - position)
        return TopicLag(lag=lag, partitions=len(tps))

    async def close(self) -> None:
        admin, offsets = self._admin, self._offsets
        self._admin = self._offsets = None
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            async with asyncio.timeout(self._timeout_ms / 1000):
                if offsets is not None:
                    await offsets.stop()
                if admin is not None:
                    await admin.close()
