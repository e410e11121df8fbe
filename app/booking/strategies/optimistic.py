"""C `optimistic`: read versions without locks, write only if the versions did not move;
otherwise retry the whole transaction (bounded, with full jitter)."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import BigInteger

from app.booking.errors import SoldOut
from app.booking.strategies.base import (
    Claimed,
    HoldRequest,
    RetryClaim,
    TransactionalStrategy,
    check_available,
    ga_row,
    seat_prices,
)
from app.core.metrics import BOOKING_RETRIES
from app.core.state import AppState

_CLAIM = text(
    """
    UPDATE seat s SET status = 'held', version = s.version + 1
    FROM unnest(:ids, :versions) AS v(id, version)
    WHERE s.id = v.id AND s.version = v.version AND s.status = 'available'
    """
).bindparams(
    bindparam("ids", type_=ARRAY(BigInteger)), bindparam("versions", type_=ARRAY(BigInteger))
)


class OptimisticStrategy(TransactionalStrategy):
    name: ClassVar[str] = "optimistic"

    def max_attempts(self, state: AppState) -> int:
        return state.settings.optimistic_max_retries

    async def claim_seats(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        rows = await seat_prices(session, req)
        claimed = check_available(rows)
        result = await session.execute(
            _CLAIM, {"ids": [r[0] for r in rows], "versions": [r[4] for r in rows]}
        )
        if result.rowcount != len(rows):  # type: ignore[attr-defined]
            BOOKING_RETRIES.labels(self.name).inc()
            raise RetryClaim
        return claimed

    async def claim_stock(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        stock, price, currency, version = await ga_row(session, req)
        if stock < req.quantity:
            raise SoldOut(f"Only {stock} tickets left.")
        result = await session.execute(
            text(
                "UPDATE ga_inventory SET stock = stock - :n, version = version + 1"
                " WHERE concert_id = :c AND version = :v"
            ),
            {"n": req.quantity, "c": req.concert_id, "v": version},
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            BOOKING_RETRIES.labels(self.name).inc()
            raise RetryClaim
        return Claimed((), price * req.quantity, currency)
