"""E `atomic`: one conditional UPDATE … WHERE available … RETURNING; no locks held between
statements, no retries. PostgreSQL's row lock inside the UPDATE serialises the racers."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.booking.errors import SeatTaken, SoldOut
from app.booking.strategies.base import (
    Claimed,
    HoldRequest,
    TransactionalStrategy,
    ga_row,
    seat_prices,
)

_CLAIM = text(
    """
    UPDATE seat s SET status = 'held', version = s.version + 1
    FROM seat_section sec
    WHERE s.id = ANY(:ids) AND s.concert_id = :c AND s.status = 'available'
      AND sec.id = s.section_id
    RETURNING s.id, sec.price_minor, sec.currency
    """
)


class AtomicStrategy(TransactionalStrategy):
    name: ClassVar[str] = "atomic"

    async def claim_seats(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        rows = (
            await session.execute(_CLAIM, {"ids": list(req.seat_ids), "c": req.concert_id})
        ).all()
        if len(rows) != len(req.seat_ids):
            # Slow path only on failure: seat_prices raises 422 for foreign seats.
            await seat_prices(session, req)
            taken = sorted(set(req.seat_ids) - {r[0] for r in rows})
            raise SeatTaken(f"Seats {taken} are already taken.", seat_ids=taken)
        return Claimed(tuple(sorted(r[0] for r in rows)), sum(r[1] for r in rows), rows[0][2])

    async def claim_stock(self, session: AsyncSession, req: HoldRequest, token: int) -> Claimed:
        row = (
            await session.execute(
                text(
                    "UPDATE ga_inventory SET stock = stock - :n, version = version + 1"
                    " WHERE concert_id = :c AND stock >= :n RETURNING price_minor, currency"
                ),
                {"n": req.quantity, "c": req.concert_id},
            )
        ).first()
        if row is None:
            stock = (await ga_row(session, req))[0]
            raise SoldOut(f"Only {stock} tickets left.")
        return Claimed((), row[0] * req.quantity, row[1])
