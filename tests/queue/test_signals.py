"""The admission controller's view of downstream health, combined from every booking
consumer's report and the plain signal keys, on real Redis."""

from __future__ import annotations

import json
import time
import uuid

from redis.asyncio import Redis

from app.core.config import Settings
from app.core.redis import Keys
from app.queue.signals import (
    fresh_members,
    members_key,
    publish_signals,
    read_signals,
    report_member,
)


async def test_members_add_up_and_stale_ones_drop_out(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url)
    keys = Keys(f"{settings.redis_prefix}-sig{uuid.uuid4().hex[:6]}")
    try:
        empty = await read_signals(redis, keys)
        assert (empty.consumer_lag, empty.p95_ms, empty.error_ratio) == (None, None, None)
        await report_member(redis, keys, "a", lag=300, p95_ms=120.0, errors=1, messages=50, ttl_s=5)
        await report_member(
            redis, keys, "b", lag=200, p95_ms=900.0, errors=0, messages=150, ttl_s=5
        )
        # A member that stopped reporting long ago no longer counts, and is removed.
        await redis.hset(
            members_key(keys),
            "gone",
            json.dumps(
                {
                    "lag": 10**6,
                    "p95_ms": 10**6,
                    "errors": 10**6,
                    "messages": 1,
                    "at": time.time() - 60,
                    "ttl_s": 3,
                }
            ),
        )
        signals = await read_signals(redis, keys)
        assert signals.consumer_lag == 500  # lags add up
        assert signals.p95_ms == 900.0  # the worst member's latency
        assert signals.error_ratio == 1 / 200  # errors over all messages
        assert set(await fresh_members(redis, keys)) == {"a", "b"}
        assert not await redis.hexists(members_key(keys), "gone")
        # A plain signal from a whole-picture writer wins when it is worse.
        await publish_signals(redis, keys, consumer_lag=9000, error_ratio=0.0001)
        combined = await read_signals(redis, keys)
        assert combined.consumer_lag == 9000
        assert combined.error_ratio == 1 / 200
    finally:
        async for key in redis.scan_iter(match=f"{keys.prefix}:*"):
            await redis.delete(key)
        await redis.aclose()
