"""Helpers shared by the catalog domains: slugs, keyset queries, conflict mapping."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.pagination import InvalidCursor, decode_cursor, encode_cursor
from app.core.problems import Conflict, ProblemError

T = TypeVar("T")


def slugify(value: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")
    return slug or "item"


async def commit_or_conflict(session: AsyncSession, conflict: type[Conflict], detail: str) -> None:
    """Commit; a unique/foreign-key/check violation becomes a 409 and nothing is written."""
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise conflict(detail) from exc


async def keyset_page(
    session: AsyncSession,
    stmt: Select[T],
    *,
    order: Sequence[InstrumentedAttribute[Any]],
    cursor: str | None,
    limit: int,
    key_of: Any,
) -> tuple[list[T], str | None]:
    """Rows after `cursor` in `order` (ascending, last column unique) plus the next cursor.

    `limit` is bounded by the route's schema."""
    if cursor:
        values = decode_cursor(cursor, len(order))
        stmt = stmt.where(_after(order, values))
    rows = list((await session.scalars(stmt.order_by(*order).limit(limit + 1))).all())
    next_cursor = encode_cursor(key_of(rows[limit - 1])) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _after(order: Sequence[InstrumentedAttribute[Any]], values: list[Any]) -> Any:
    # (a, b) > (x, y) spelled out so each value is coerced to its own column type.
    typed = [_coerce(col, value) for col, value in zip(order, values, strict=True)]
    return or_(
        *(
            and_(*(order[j] == typed[j] for j in range(i)), col > typed[i])
            for i, col in enumerate(order)
        )
    )


def _coerce(col: InstrumentedAttribute[Any], value: Any) -> Any:
    kind = col.type.python_type
    try:
        return datetime.fromisoformat(str(value)) if kind is datetime else kind(value)
    except (TypeError, ValueError) as exc:
        raise InvalidCursor("The cursor is not one this API issued.") from exc


class NullNotAllowed(ProblemError):
    status = 422
    slug = "validation-error"
    title = "Request validation failed"


def changes(data: BaseModel, *, nullable: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields a PATCH sets; explicit null is only accepted for nullable fields."""
    updates = data.model_dump(exclude_unset=True)
    bad = sorted(k for k, v in updates.items() if v is None and k not in nullable)
    if bad:
        raise NullNotAllowed(
            f"These fields cannot be null: {', '.join(bad)}.",
            errors=[{"field": k, "message": "may not be null", "code": "null"} for k in bad],
        )
    return updates
