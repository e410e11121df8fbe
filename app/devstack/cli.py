"""`ticket-rush stack …` commands; the main CLI mounts `stack_app` under the name `stack`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from app.core.config import get_settings
from app.devstack import StackError, stack

stack_app = typer.Typer(
    help="Local stack: PostgreSQL, Redis, a Kafka-protocol broker and the app processes.",
    no_args_is_help=True,
)
console = Console()


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    # A failed step is a red message and exit code 1, not a traceback.
    try:
        yield
    except StackError as exc:
        console.print(Text(str(exc), "red"))
        raise typer.Exit(1) from None


@stack_app.command()
def up(
    with_app: Annotated[
        bool, typer.Option("--with-app", help="Also migrate and start the app processes.")
    ] = False,
) -> None:
    """Start (or reuse) PostgreSQL, Redis and the broker; write .run/stack.env."""
    settings = get_settings()
    with _reported():
        asyncio.run(stack.up(settings, with_app=with_app, console=console))
    console.print(stack.status_table(asyncio.run(stack.status(settings))))


@stack_app.command()
def down() -> None:
    """Stop everything `up` started; shared PostgreSQL/Redis are left running."""
    with _reported():
        stack.down(get_settings(), console)


@stack_app.command()
def status() -> None:
    """Show each component with a health probe; exit 1 unless all of them are fine."""
    rows = asyncio.run(stack.status(get_settings()))
    if not rows:
        console.print("nothing running")
        raise typer.Exit(1)
    console.print(stack.status_table(rows))
    raise typer.Exit(0 if all(row.ok for row in rows) else 1)
