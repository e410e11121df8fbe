"""Cache-aside for rendered GET responses: versioned keys, TTL jitter, single-flight, stale
serving and negative caching.

Entries live under a namespace (e.g. `concert:42`, `concerts`) whose generation counter is part of
every key; a write bumps the generation, so a slow loader that read old rows can only fill a key
nobody reads any more. Keys carry a `{namespace}` hash tag so each Lua call stays in one slot.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from app.core.metrics import CACHE_LOADS, CACHE_REQUESTS

SCHEMA_VERSION = "v1"
_NEGATIVE = b"-"

# Returns [generation, value-or-false].
_GET = """
local gen = redis.call('GET', KEYS[1]) or '0'
return {gen, redis.call('GET', KEYS[2] .. gen .. ARGV[1])}
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class CachedResponse:
    body: bytes | None  # None: the resource does not exist (negative entry)
    etag: str
    stale: bool = False


def make_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _encode(fresh_until_ms: int, body: bytes | None) -> bytes:
    etag = make_etag(body).encode() if body is not None else _NEGATIVE
    return b"%d|%s|%s" % (fresh_until_ms, etag, body or b"")


def _decode(raw: bytes, now_ms: int) -> CachedResponse:
    fresh_until, etag, body = raw.split(b"|", 2)
    stale = int(fresh_until) < now_ms
    if etag == _NEGATIVE:
        return CachedResponse(None, "", stale)
    return CachedResponse(body, etag.decode(), stale)


Loader = Callable[[], Awaitable[bytes | None]]


class ResponseCache:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        ttl_s: int,
        jitter: float,
        negative_ttl_s: int,
        lock_ttl_ms: int,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:cache:{SCHEMA_VERSION}"
        self._ttl_s = ttl_s
        self._jitter = jitter
        self._negative_ttl_s = negative_ttl_s
        self._lock_ttl_ms = lock_ttl_ms
        # In-process single-flight: one coroutine per key talks to Redis/DB, the rest await it.
        self._inflight: dict[str, asyncio.Future[CachedResponse]] = {}
        self._get = redis.register_script(_GET)
        self._release = redis.register_script(_RELEASE)

    def _ns(self, namespace: str) -> str:
        return f"{self._prefix}:{{{namespace}}}"

    async def invalidate(self, *namespaces: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for ns in namespaces:
                pipe.incr(self._ns(ns) + ":gen")
            await pipe.execute()

    async def get_or_load(
        self, cache: str, namespace: str, key: str, loader: Loader
    ) -> CachedResponse:
        flight_key = f"{namespace}\x00{key}"
        existing = self._inflight.get(flight_key)
        if existing is not None:
            CACHE_REQUESTS.labels(cache, "coalesced").inc()
            return await asyncio.shield(existing)
        future: asyncio.Future[CachedResponse] = asyncio.get_running_loop().create_future()
        self._inflight[flight_key] = future
        try:
            result = await self._lookup(cache, namespace, key, loader)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[flight_key]

    async def _lookup(self, cache: str, namespace: str, key: str, loader: Loader) -> CachedResponse:
        base = self._ns(namespace)
        gen_key, lock_key = base + ":gen", base + ":lock:" + key
        gen, raw = await self._get(keys=[gen_key, base + ":g"], args=[":" + key])
        data_key = f"{base}:g{int(gen)}:{key}"
        if raw is not None:
            cached = _decode(raw, int(time.time() * 1000))
            if not cached.stale:
                CACHE_REQUESTS.labels(
                    cache, "hit" if cached.body is not None else "negative_hit"
                ).inc()
                return cached
            # Stale: one process refreshes, everyone else keeps serving the old copy.
            token = secrets.token_hex(8)
            if await self._redis.set(lock_key, token, nx=True, px=self._lock_ttl_ms):
                CACHE_REQUESTS.labels(cache, "refresh").inc()
                return await self._load(cache, data_key, lock_key, token, loader)
            CACHE_REQUESTS.labels(cache, "stale").inc()
            return cached
        CACHE_REQUESTS.labels(cache, "miss").inc()
        deadline = time.monotonic() + self._lock_ttl_ms / 1000
        while True:
            token = secrets.token_hex(8)
            if await self._redis.set(lock_key, token, nx=True, px=self._lock_ttl_ms):
                # The previous holder may have filled the key and released the lock between our
                # first read and this SET: check again before loading a second time.
                filled = await self._redis.get(data_key)
                if isinstance(filled, bytes):
                    await self._release(keys=[lock_key], args=[token])
                    return _decode(filled, int(time.time() * 1000))
                return await self._load(cache, data_key, lock_key, token, loader)
            # Another process is loading this key: wait for its result rather than stampede.
            await asyncio.sleep(0.005)
            loaded = await self._redis.get(data_key)
            if isinstance(loaded, bytes):
                return _decode(loaded, int(time.time() * 1000))
            if time.monotonic() > deadline:
                return await self._load(cache, data_key, None, "", loader)

    async def _load(
        self, cache: str, data_key: str, lock_key: str | None, token: str, loader: Loader
    ) -> CachedResponse:
        try:
            CACHE_LOADS.labels(cache).inc()
            body = await loader()
            base_s = self._ttl_s if body is not None else self._negative_ttl_s
            fresh_s = base_s * (1 + random.uniform(-self._jitter, self._jitter))  # noqa: S311
            now_ms = int(time.time() * 1000)
            # Keep entries twice as long as they are fresh so a stale copy can be served
            # while one loader refreshes.
            await self._redis.set(
                data_key, _encode(now_ms + int(fresh_s * 1000), body), px=int(fresh_s * 2000)
            )
            return CachedResponse(body, make_etag(body) if body is not None else "")
        finally:
            if lock_key is not None:
                await self._release(keys=[lock_key], args=[token])
