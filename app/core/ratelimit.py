"""Fixed-window rate limits in Redis.

Hand-written because it is one atomic Lua call; the libraries we looked at bring their own Redis
client and connection pool, which we do not want next to the app's pool.
"""

from __future__ import annotations

from redis.asyncio import Redis

from app.core.problems import RateLimited

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


async def hit(redis: Redis, key: str, *, limit: int, window_s: int) -> int | None:
    """Count one hit; return the seconds to wait if the limit is exceeded, else None."""
    count, ttl_ms = await redis.eval(_HIT, 1, key, window_s * 1000)
    if int(count) > limit:
        return max(1, -(-int(ttl_ms) // 1000))
    return None


async def enforce(redis: Redis, limits: list[tuple[str, int, int]]) -> None:
    """Apply every (key, limit, window_s); raise 429 with the longest Retry-After."""
    waits = [
        w
        for key, limit, window in limits
        if (w := await hit(redis, key, limit=limit, window_s=window))
    ]
    if waits:
        raise RateLimited(max(waits))
