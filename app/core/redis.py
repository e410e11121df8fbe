"""Redis client factory and the key-naming helper shared by every domain."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from app.core.config import Settings


def create_redis(settings: Settings) -> Redis:
    # Blocking: a burst beyond max_connections waits for a free connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=5,
        decode_responses=False,
    )
    return Redis(connection_pool=pool)


class Keys:
    """Builds namespaced keys: `<prefix>:<part>:...`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: object) -> str:
        return ":".join((self.prefix, *(str(p) for p in parts)))
