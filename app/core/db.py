"""SQLAlchemy declarative base, naming convention and the async engine factory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import DateTime, MetaData, event, func, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.core.config import Settings, get_settings
from app.core.metrics import DB_POOL_CAPACITY, DB_POOL_IN_USE

# Explicit names so Alembic revisions and the models agree on every constraint.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


async def allow_bulk_statements(session: AsyncSession) -> None:
    """Raise this transaction's statement timeout for a rare admin bulk operation."""
    # SET LOCAL cannot take bind parameters; the value is an int from settings.
    timeout_ms = int(get_settings().db_bulk_statement_timeout_ms)
    await session.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))


def create_engine(settings: Settings) -> AsyncEngine:
    connect_args: dict[str, object] = {}
    if settings.db_statement_timeout_ms:
        connect_args["server_settings"] = {
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "application_name": "ticket-rush",
        }
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # No pre-ping: it costs a round trip per checkout on the hot path; a dead connection
        # fails its statement instead (a 503 problem) and is replaced, and recycling bounds age.
        pool_recycle=1800,
        connect_args=connect_args,
    )
    _instrument_pool(engine, settings.db_pool_size + settings.db_max_overflow)
    event.listen(engine.sync_engine, "handle_error", _terminated_is_a_disconnect)
    return engine


def _instrument_pool(engine: AsyncEngine, capacity: int) -> None:
    # Pool events, not a scrape-time collector: they work in prometheus-client's multiprocess
    # mode, where only metric objects (files) are aggregated across workers.
    DB_POOL_CAPACITY.inc(capacity)

    def on_checkout(*_: Any) -> None:
        DB_POOL_IN_USE.inc()

    def on_checkin(*_: Any) -> None:
        DB_POOL_IN_USE.dec()

    def on_dispose(*_: Any) -> None:
        DB_POOL_CAPACITY.dec(capacity)

    event.listen(engine.sync_engine, "checkout", on_checkout)
    event.listen(engine.sync_engine, "checkin", on_checkin)
    event.listen(engine.sync_engine, "engine_disposed", on_dispose)


def _terminated_is_a_disconnect(context: ExceptionContext) -> None:
    # A backend terminated mid-operation (pg_terminate_backend, a failover) can leave asyncpg's
    # protocol stuck: "cannot switch to state N; another operation (2) is in progress"
    # (InternalClientError, sqlalchemy#13241, found by `make chaos`). SQLAlchemy does not count
    # it as a disconnect, so the broken connection went back to the pool and the request was a
    # 500. As a disconnect the pool drops it and callers see `connection_invalidated`.
    exc: BaseException | None = context.original_exception
    while exc is not None:
        if isinstance(exc, asyncpg.InternalClientError) and "in progress" in str(exc):
            context.is_disconnect = True
            return
        exc = exc.__cause__


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
