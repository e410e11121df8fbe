"""Downstream health signals the admission controller reads, written by other processes.

Keys (one `{signals}` hash tag, so the reader's MGET is one slot on Redis Cluster):
- `<prefix>:{signals}:consumer_lag`        messages not yet consumed from booking-requests
- `<prefix>:{signals}:booking_p95_ms`      p95 latency of booking requests, milliseconds
- `<prefix>:{signals}:booking_error_ratio` failed / all booking requests, 0..1
Writers set them with a TTL (`publish_signals`), so a signal whose writer stopped reporting
vanishes and counts as healthy: absent signals never throttle a sale.
"""

from __future__ import annotations

from redis.asyncio import Redis

from app.core.redis import Keys
from app.queue.control import Signals

FIELDS = ("consumer_lag", "booking_p95_ms", "booking_error_ratio")


def signal_keys(keys: Keys) -> list[str]:
    return [keys("{signals}", name) for name in FIELDS]


def _number(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


async def read_signals(redis: Redis, keys: Keys) -> Signals:
    lag, p95, errors = (_number(v) for v in await redis.mget(signal_keys(keys)))
    return Signals(consumer_lag=lag, p95_ms=p95, error_ratio=errors)


async def publish_signals(
    redis: Redis,
    keys: Keys,
    *,
    consumer_lag: float | None = None,
    p95_ms: float | None = None,
    error_ratio: float | None = None,
    ttl_s: float = 15.0,
) -> None:
    """Report the signals a process measures (None: leave that signal alone)."""
    values = (consumer_lag, p95_ms, error_ratio)
    async with redis.pipeline(transaction=False) as pipe:
        for key, value in zip(signal_keys(keys), values, strict=True):
            if value is not None:
                pipe.set(key, repr(float(value)), px=int(ttl_s * 1000))
        await pipe.execute()
