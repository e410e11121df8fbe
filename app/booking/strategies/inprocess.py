"""A `inprocess`: an asyncio lock per seat (or per concert's stock), then read-check-write.

Correct only inside one process: two API processes each hold "their" lock for the same seat, and
only the database constraints stop the second write (the failure the benchmark demonstrates)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.booking.errors import SoldOut
from app.booking.strategies.base import (
    Claimed,
    HoldRequest,
    TransactionalStrategy,
    check_available,
    ga_row,
    seat_prices,
)
from app.core.metrics import LOCK_WAIT
from app.core.state import AppState


class _LockTable:
    """Locks keyed by name, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class InProcessStrategy(TransactionalStrategy):
    name: ClassVar[str] = "inprocess"

    def __init__(self) -> None:
        self._locks = _LockTable()

    @asynccontextmanager
    async def guard(self, state: AppState, req: HoldRequest) -> AsyncIterator[int]:
        keys = [f"seat:{s}" for s in req.seat_ids] or [f"ga:{req.concert_id}"]
        async with AsyncExitStack() as stack:
            started = time.perf_counter()
            for key in keys:  # sorted seat ids: no lock-order deadlocks
                await stack.enter_async_context(self._locks.hold(key))
            LOCK_WAIT.labels(self.name).observe(time.perf_counter() - started)
            yield 0

    async def claim_seats(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        claimed = check_available(await seat_prices(session, req))
        # Unconditional write: the in-process lock is this strategy's only guard.
        await session.execute(
            text("UPDATE seat SET status = 'held', version = version + 1 WHERE id = ANY(:ids)"),
            {"ids": list(req.seat_ids)},
        )
        return claimed

    async def claim_stock(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        stock, price, currency, _ = await ga_row(session, req)
        if stock < req.quantity:
            raise SoldOut(f"Only {stock} tickets left.")
        await session.execute(
            text(
                "UPDATE ga_inventory SET stock = stock - :n, version = version + 1"
                " WHERE concert_id = :c"
            ),
            {"n": req.quantity, "c": req.concert_id},
        )
        return Claimed((), price * req.quantity, currency)
