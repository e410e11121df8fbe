"""All SQL of the queue domain (the `sale` table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.queue.models import Sale, SaleStatus


async def get_sale(session: AsyncSession, sale_id: int) -> Sale | None:
    return await session.get(Sale, sale_id)


async def live_sale_of(session: AsyncSession, concert_id: int) -> Sale | None:
    sale: Sale | None = await session.scalar(
        select(Sale).where(Sale.concert_id == concert_id, Sale.status != SaleStatus.closed)
    )
    return sale


async def latest_sale_id_of(session: AsyncSession, concert_id: int) -> int | None:
    sale_id: int | None = await session.scalar(
        select(Sale.id).where(Sale.concert_id == concert_id).order_by(Sale.id.desc()).limit(1)
    )
    return sale_id


async def transition(
    session: AsyncSession,
    sale_id: int,
    *,
    allowed_from: Sequence[str],
    values: dict[str, Any],
) -> Sale | None:
    """Conditional status change (a lost race or a stale worker changes nothing): the updated
    row, or None if the sale was not in one of `allowed_from`."""
    stmt = (
        update(Sale)
        .where(Sale.id == sale_id, Sale.status.in_(list(allowed_from)))
        .values(**values)
        .returning(Sale)
        .execution_options(synchronize_session=False)
    )
    sale: Sale | None = await session.scalar(stmt)
    return sale


async def active_sales(session: AsyncSession) -> list[Sale]:
    """Scheduled and open sales: the admission worker's work list."""
    stmt = select(Sale).where(Sale.status.in_([SaleStatus.scheduled, SaleStatus.open]))
    return list((await session.scalars(stmt.order_by(Sale.id))).all())
