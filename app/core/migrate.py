"""Run the Alembic migrations in `app/migrations` without an ini file.

The functions are synchronous: `env.py` drives its asyncpg engine with its own `asyncio.run`, so
async callers must run them in a worker thread (`await asyncio.to_thread(upgrade, url)`).
"""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(database_url: str, *, batch_size: int | None = None) -> Config:
    """An Alembic config for `database_url`; `batch_size` sets the data backfill batch size."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Config values go through ConfigParser interpolation: a URL-encoded password has '%'.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    # Revisions read their tunables as `-x key=value`, the same whether run by the alembic CLI.
    config.cmd_opts = Namespace(x=[] if batch_size is None else [f"batch_size={batch_size}"])
    return config


def upgrade(database_url: str, revision: str = "head", *, batch_size: int | None = None) -> None:
    """Upgrade the database at `database_url` to `revision`."""
    command.upgrade(alembic_config(database_url, batch_size=batch_size), revision)


def downgrade(database_url: str, revision: str, *, batch_size: int | None = None) -> None:
    """Downgrade the database at `database_url` to `revision`."""
    command.downgrade(alembic_config(database_url, batch_size=batch_size), revision)
