"""D `redis_lock`: SET NX PX locks in Redis, released by a token-checked Lua script, plus a
fencing token that the database write checks.

A holder can stall (GC pause, slow network) past its lease; another fan then takes the lock and
books. The fencing token (Kleppmann, "How to do distributed locking") makes the stale holder's
late write fail: each seat stores the highest token that wrote it and refuses smaller ones."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ClassVar

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.booking.errors import BookingContention, LockLost, SeatTaken, SoldOut
from app.booking.models import Booking
from app.booking.strategies.base import (
    Claimed,
    HoldRequest,
    TransactionalStrategy,
    check_available,
    ga_row,
    seat_prices,
)
from app.core.metrics import BOOKING_RETRIES, LOCK_WAIT
from app.core.state import AppState

# All keys share the concert's hash tag, so one script call stays in one cluster slot.
_ACQUIRE = """
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return redis.call('INCR', KEYS[1])
"""
_RELEASE = """
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then n = n + redis.call('DEL', KEYS[i]) end
end
return n
"""


@dataclass(frozen=True, slots=True)
class Lease:
    keys: list[str]
    owner: str
    fencing_token: int


async def acquire(
    redis: Redis, *, fence_key: str, lock_keys: list[str], ttl_ms: int, wait_ms: int
) -> Lease | None:
    """All locks at once (no partial holds, no lock-order deadlocks), polling until `wait_ms`."""
    owner = secrets.token_hex(12)
    deadline = time.monotonic() + wait_ms / 1000
    delay = 0.001
    while True:
        token = int(
            await redis.eval(_ACQUIRE, 1 + len(lock_keys), fence_key, *lock_keys, owner, ttl_ms)
        )
        if token:
            return Lease(lock_keys, owner, token)
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)


async def release(redis: Redis, lease: Lease) -> int:
    return int(await redis.eval(_RELEASE, len(lease.keys), *lease.keys, lease.owner))


_RAISE_FENCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return current
"""


class RedisLockStrategy(TransactionalStrategy):
    name: ClassVar[str] = "redis_lock"

    async def hold(self, state: AppState, req: HoldRequest) -> Booking:
        # Losers of a hot seat should hear "taken" at once, not after waiting out the lock.
        async with state.sessionmaker() as session:
            if req.general_admission:
                stock = (await ga_row(session, req))[0]
                if stock < req.quantity:
                    raise SoldOut(f"Only {stock} tickets left.")
            else:
                check_available(await seat_prices(session, req))
        try:
            return await super().hold(state, req)
        except LockLost as exc:
            # Redis keeps no data on disk here: after a Redis loss the fence counter restarts
            # below what the database saw. Lift it so the next holder gets a valid token; this
            # request still fails, since a stale holder and a reset look the same.
            fence_key, _ = self.lock_keys(state, req)
            await state.redis.eval(_RAISE_FENCE, 1, fence_key, exc.extra.get("newest_fence", 0))
            raise

    def lock_keys(self, state: AppState, req: HoldRequest) -> tuple[str, list[str]]:
        tag = f"{{concert:{req.concert_id}}}"
        locks = [state.keys(tag, "lock", "seat", s) for s in req.seat_ids] or [
            state.keys(tag, "lock", "ga")
        ]
        return state.keys(tag, "fence"), locks

    @asynccontextmanager
    async def guard(self, state: AppState, req: HoldRequest) -> AsyncIterator[int]:
        fence_key, lock_keys = self.lock_keys(state, req)
        started = time.perf_counter()
        lease = await acquire(
            state.redis,
            fence_key=fence_key,
            lock_keys=lock_keys,
            ttl_ms=state.settings.redis_lock_ttl_ms,
            wait_ms=state.settings.redis_lock_wait_ms,
        )
        LOCK_WAIT.labels(self.name).observe(time.perf_counter() - started)
        if lease is None:
            BOOKING_RETRIES.labels(self.name).inc()
            raise BookingContention("Could not get the seat lock in time.")
        try:
            yield lease.fencing_token
        finally:
            await release(state.redis, lease)

    async def claim_seats(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        rows = (
            await session.execute(
                text(
                    """
                    UPDATE seat s SET status = 'held', fence = :token, version = s.version + 1
                    FROM seat_section sec
                    WHERE s.id = ANY(:ids) AND s.concert_id = :c AND s.status = 'available'
                      AND s.fence < :token AND sec.id = s.section_id
                    RETURNING s.id, sec.price_minor, sec.currency
                    """
                ),
                {"ids": list(req.seat_ids), "c": req.concert_id, "token": token},
            )
        ).all()
        if len(rows) == len(req.seat_ids):
            return Claimed(tuple(sorted(r[0] for r in rows)), sum(r[1] for r in rows), rows[0][2])
        fenced = (
            await session.execute(
                text("SELECT id, fence FROM seat WHERE id = ANY(:ids) AND fence > :token"),
                {"ids": list(req.seat_ids), "token": token},
            )
        ).all()
        if fenced:
            raise LockLost(
                f"A newer lock holder wrote seats {[r[0] for r in fenced]} first.",
                newest_fence=max(r[1] for r in fenced),
            )
        await seat_prices(session, req)  # 422 for foreign seats
        taken = sorted(set(req.seat_ids) - {r[0] for r in rows})
        raise SeatTaken(f"Seats {taken} are already taken.", seat_ids=taken)

    async def claim_stock(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        stock, price, currency, _ = await ga_row(session, req)
        if stock < req.quantity:
            raise SoldOut(f"Only {stock} tickets left.")
        result = await session.execute(
            text(
                "UPDATE ga_inventory SET stock = stock - :n, fence = :token, version = version + 1"
                " WHERE concert_id = :c AND fence < :token"
            ),
            {"n": req.quantity, "c": req.concert_id, "token": token},
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            newest = await session.scalar(
                text("SELECT fence FROM ga_inventory WHERE concert_id = :c"), {"c": req.concert_id}
            )
            raise LockLost(
                "A newer lock holder wrote the stock first.", newest_fence=int(newest or 0)
            )
        return Claimed((), price * req.quantity, currency)
