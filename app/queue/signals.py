"""Downstream health signals the admission controller reads, written by other processes.

Two sources, combined by `read_signals` (worst of both):
- plain keys `<prefix>:{signals}:consumer_lag`, `…:booking_p95_ms`, `…:booking_error_ratio`,
  set with a TTL by `publish_signals` (one writer that sees the whole picture, e.g. the operator);
- the hash `<prefix>:{signals}:members`: every booking consumer reports its own share
  (`report_member`: lag of its partitions, p95 of request-to-outcome latency, errors and
  messages handled in the last interval). Lags add up, p95 is the worst member's, the error
  ratio is errors / messages over all members.
Everything carries the `{signals}` hash tag (one slot on Redis Cluster). A signal whose writer
stopped reporting vanishes (TTL, or a member entry older than its TTL) and counts as healthy:
absent signals never throttle a sale.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from app.core.redis import Keys
from app.queue.control import Signals

FIELDS = ("consumer_lag", "booking_p95_ms", "booking_error_ratio")


def signal_keys(keys: Keys) -> list[str]:
    return [keys("{signals}", name) for name in FIELDS]


def members_key(keys: Keys) -> str:
    return keys("{signals}", "members")


@dataclass(frozen=True, slots=True)
class MemberReport:
    lag: int
    p95_ms: float | None
    errors: int
    messages: int
    at: float  # writer's Unix time, seconds
    ttl_s: float


def _number(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _worst(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _member(raw: bytes | str) -> MemberReport | None:
    try:
        data = json.loads(raw)
        return MemberReport(
            lag=int(data["lag"]),
            p95_ms=None if data["p95_ms"] is None else float(data["p95_ms"]),
            errors=int(data["errors"]),
            messages=int(data["messages"]),
            at=float(data["at"]),
            ttl_s=float(data["ttl_s"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


async def fresh_members(redis: Redis, keys: Keys) -> dict[str, MemberReport]:
    """The members' reports still within their TTL (stale ones are removed)."""
    raw = await redis.hgetall(members_key(keys))
    now = time.time()
    fresh: dict[str, MemberReport] = {}
    stale: list[bytes | str] = []
    for name, value in raw.items():
        report = _member(value)
        if report is None or now - report.at > report.ttl_s:
            stale.append(name)
        else:
            fresh[name.decode() if isinstance(name, bytes) else name] = report
    if stale:
        await redis.hdel(members_key(keys), *stale)
    return fresh


async def read_signals(redis: Redis, keys: Keys) -> Signals:
    lag, p95, errors = (_number(v) for v in await redis.mget(signal_keys(keys)))
    reports = list((await fresh_members(redis, keys)).values())
    if reports:
        messages = sum(r.messages for r in reports)
        lag = _worst(lag, float(sum(r.lag for r in reports)))
        p95 = _worst(p95, *(r.p95_ms for r in reports))
        if messages:
            errors = _worst(errors, sum(r.errors for r in reports) / messages)
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


async def withdraw_member(redis: Redis, keys: Keys, member: str) -> None:
    """A consumer that stops cleanly stops counting at once, not after its report's TTL."""
    await redis.hdel(members_key(keys), member)


async def report_member(
    redis: Redis,
    keys: Keys,
    member: str,
    *,
    lag: int,
    p95_ms: float | None,
    errors: int,
    messages: int,
    ttl_s: float,
) -> None:
    """One booking consumer's share of the signals; it counts for `ttl_s` seconds."""
    value = json.dumps(
        {
            "lag": lag,
            "p95_ms": p95_ms,
            "errors": errors,
            "messages": messages,
            "at": time.time(),
            "ttl_s": ttl_s,
        }
    )
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(members_key(keys), member, value)
        # The whole hash goes when every member has stopped reporting.
        pipe.pexpire(members_key(keys), int(ttl_s * 1000))
        await pipe.execute()
