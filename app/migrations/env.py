"""Alembic environment: every revision runs over one asyncpg connection, in its own transaction."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from alembic.util import CommandError
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app.models  # noqa: F401  (registers every table on Base.metadata for autogenerate)
from app.core.config import get_settings
from app.core.db import Base

config = context.config
# Only the alembic CLI passes an ini file; the app keeps its own logging setup.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # Data migrations commit batches in autocommit blocks; a transaction per revision keeps
        # every other revision atomic and stamps each one as soon as it is done.
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = create_async_engine(
        url,
        poolclass=pool.NullPool,
        # No statement_timeout here: validating constraints on big tables takes longer than the
        # API's timeout, and the name makes the migration easy to spot in pg_stat_activity.
        connect_args={"server_settings": {"application_name": "ticket-rush-migrate"}},
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    # Revision 0002 reads the legacy rows to build artists: it cannot be rendered as plain SQL.
    raise CommandError("offline (--sql) migrations are not supported")
asyncio.run(_run_async_migrations())
