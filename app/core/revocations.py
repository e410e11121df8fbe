"""Each API process's copy of the logged-out access tokens, so checking a token costs no
Redis round trip (it was a sixth of a waiting-room call in the bench-spike profile).

Logout adds the token id to `<prefix>:auth:revoked` (zset: jti -> token expiry, epoch s) and
publishes it on the channel of the same name. Every process subscribes, then loads the set, and
from then on answers from memory. While it is not in sync (starting, Redis unreachable, the
subscription lost or silent) it asks Redis on every check, as before. The time in which another
process still accepts a token just logged out is the pub/sub delivery time, milliseconds; the
process that handled the logout refuses the token at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import cast

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.redis import Keys
from app.core.tasks import stop_task

log = structlog.get_logger(__name__)

# A subscription that has shown no sign of life (message or pong) for this long is resynced.
_SILENCE_S = 30.0
_PING_EVERY_S = 10.0


class RevocationList:
    def __init__(self, redis: Redis, keys: Keys, *, horizon_s: int) -> None:
        """`horizon_s`: the longest a revoked token can still be valid (the access-token TTL)."""
        self.redis = redis
        self.key = keys("auth", "revoked")
        self.horizon_s = horizon_s
        self._revoked: dict[str, float] = {}
        self._synced = False
        self._task: asyncio.Task[None] | None = None

    @property
    def synced(self) -> bool:
        return self._synced

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task, name="revocations")

    async def revoke(self, jti: str, expires_at: float) -> None:
        """Refuse this token id until `expires_at` (epoch s), in every process."""
        self._revoked[jti] = expires_at
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key, {jti: expires_at})
            pipe.zremrangebyscore(self.key, "-inf", time.time())
            # Every entry expires within the horizon: the set goes once logouts stop.
            pipe.expire(self.key, self.horizon_s + 60)
            pipe.publish(self.key, f"{jti} {expires_at!r}")
            await pipe.execute()

    async def is_revoked(self, jti: str) -> bool:
        if self._synced:
            return jti in self._revoked
        return await self.redis.zscore(self.key, jti) is not None

    async def _follow(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._follow_once()
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("revocations_unsynced", error=repr(exc), retry_in_s=delay)
            finally:
                self._synced = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _follow_once(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(self.key)
            # Subscribed before loading, so nothing published meanwhile is missed.
            while (await pubsub.get_message(timeout=5.0) or {}).get("type") != "subscribe":
                pass
            now = time.time()
            loaded = await self.redis.zrangebyscore(self.key, now, "+inf", withscores=True)
            rows = cast("list[tuple[bytes, float]]", loaded)
            self._revoked = {_text(member): float(score) for member, score in rows}
            self._synced = True
            log.info("revocations_synced", tokens=len(self._revoked))
            alive = pinged = time.monotonic()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                clock = time.monotonic()
                if message is not None:
                    alive = clock
                    if message["type"] == "message":
                        jti, _, expires = _text(message["data"]).partition(" ")
                        self._revoked[jti] = float(expires)
                if clock - alive > _SILENCE_S:
                    raise TimeoutError("the revocation channel went silent")
                if clock - pinged > _PING_EVERY_S:
                    pinged = clock
                    await pubsub.ping()
                    self._prune()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    def _prune(self) -> None:
        now = time.time()
        for jti in [j for j, expires in self._revoked.items() if expires <= now]:
            del self._revoked[jti]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
