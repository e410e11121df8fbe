"""Redis side of streaming: who is watching, and a "live" marker so heartbeats stay off
PostgreSQL.

Lossy by design: losing Redis resets viewer counts to 0 and refuses heartbeats until nginx's
next update of the session sets the marker again (one update interval).
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from app.core.redis import Keys

# Heartbeat: count the viewer only while the channel is marked live.
_HEARTBEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[2], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return redis.call('ZCARD', KEYS[2])
"""

_COUNT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. (now_ms - tonumber(ARGV[1])), '+inf')
"""


class StreamingStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._count = redis.register_script(_COUNT)

    # `{channel:<id>}` hash tag: both keys of a channel live in one Redis Cluster slot.
    def _live(self, channel_id: int) -> str:
        return self._keys(f"{{channel:{channel_id}}}", "live")

    def _viewers(self, channel_id: int) -> str:
        return self._keys(f"{{channel:{channel_id}}}", "viewers")

    async def start_session(self, channel_id: int, *, ttl_s: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._viewers(channel_id))
            pipe.set(self._live(channel_id), 1, ex=ttl_s)
            await pipe.execute()

    async def refresh_session(self, channel_id: int, *, ttl_s: int) -> None:
        await self._redis.set(self._live(channel_id), 1, ex=ttl_s)

    async def end_session(self, channel_id: int) -> None:
        await self._redis.delete(self._live(channel_id), self._viewers(channel_id))

    async def heartbeat(self, channel_id: int, *, viewer: str, window_ms: int) -> int | None:
        """Count `viewer` as watching; the viewer count, or None if the channel is not live."""
        count = int(
            await self._heartbeat(
                keys=[self._live(channel_id), self._viewers(channel_id)], args=[viewer, window_ms]
            )
        )
        return None if count < 0 else count

    async def viewer_counts(self, channel_ids: list[int], *, window_ms: int) -> dict[int, int]:
        if not channel_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel_id in channel_ids:
                await self._count(keys=[self._viewers(channel_id)], args=[window_ms], client=pipe)
            counts = cast(list[int], await pipe.execute())
        return {cid: int(n) for cid, n in zip(channel_ids, counts, strict=True)}
