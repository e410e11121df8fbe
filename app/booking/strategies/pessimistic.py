"""B `pessimistic`: SELECT … FOR UPDATE (in seat-id order, so no deadlocks) with a lock timeout."""

from __future__ import annotations

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
from app.core.state import AppState


class PessimisticStrategy(TransactionalStrategy):
    name: ClassVar[str] = "pessimistic"

    async def prepare(self, session: AsyncSession, state: AppState) -> None:
        # SET LOCAL cannot take bind parameters; the value is an int from settings.
        await session.execute(
            text(f"SET LOCAL lock_timeout = {int(state.settings.lock_timeout_ms)}")
        )

    async def claim_seats(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        claimed = check_available(await seat_prices(session, req, lock=True))
        await session.execute(
            text("UPDATE seat SET status = 'held', version = version + 1 WHERE id = ANY(:ids)"),
            {"ids": list(req.seat_ids)},
        )
        return claimed

    async def claim_stock(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        stock, price, currency, _ = await ga_row(session, req, lock=True)
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
