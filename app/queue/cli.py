"""`ticket-rush sale ...`: create, open, close, set the admission rate, show a sale's queue."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from app.core.config import get_settings
from app.core.problems import ProblemError
from app.core.state import AppState

sale_app = typer.Typer(
    help="Waiting-room sales: create, open, close, set the admission rate, show.",
    no_args_is_help=True,
)
console = Console()
T = TypeVar("T")

_RELATIVE = re.compile(r"^\+(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _moment(value: str) -> datetime:
    """ISO 8601 with an offset, or relative to now: +90s, +10m, +2h, +1d."""
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = relative.groups()
        return datetime.now(UTC) + timedelta(**{_UNITS[unit]: int(amount)})
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise typer.BadParameter("give a UTC offset, e.g. 2026-12-24T20:00:00+09:00, or +10m")
    return moment


def _run(action: Callable[[AppState], Awaitable[T]]) -> T:
    from app.main import build_state

    async def run() -> T:
        state = build_state(get_settings())
        try:
            return await action(state)
        finally:
            await state.payments.aclose()
            await state.redis.aclose()
            await state.engine.dispose()

    try:
        return asyncio.run(run())
    except ProblemError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc


@sale_app.command("create")
def create(
    concert_id: int,
    opens_at: str = typer.Option(..., help="ISO 8601 with offset, or +90s / +10m / +2h"),
    closes_at: str = typer.Option(..., help="ISO 8601 with offset, or +90s / +10m / +2h"),
    max_active: int = typer.Option(1000, help="Admitted fans shopping at once, at most"),
    initial_rate: float = typer.Option(50.0, help="Admissions per second at open"),
    min_rate: float = typer.Option(5.0, help="Lowest rate the controller may set"),
    max_rate: float = typer.Option(500.0, help="Highest rate the controller may set"),
) -> None:
    """Schedule a sale for CONCERT_ID; prints its id."""
    from app.queue.schemas import SaleCreate
    from app.queue.service import create_sale

    try:
        data = SaleCreate(
            concert_id=concert_id,
            opens_at=_moment(opens_at),
            closes_at=_moment(closes_at),
            max_active=max_active,
            initial_rate=initial_rate,
            min_rate=min_rate,
            max_rate=max_rate,
        )
    except (ValidationError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    sale = _run(lambda state: create_sale(state, data=data))
    console.print(f"sale {sale.id}: concert {sale.concert_id}, opens {sale.opens_at.isoformat()}")


@sale_app.command("open")
def open_(sale_id: int) -> None:
    """Open SALE_ID now (the pre-queue is drawn into random places)."""
    from app.queue.service import open_sale

    sale = _run(lambda state: open_sale(state, sale_id=sale_id))
    console.print(f"[green]sale {sale.id} is open[/green]")


@sale_app.command("close")
def close(sale_id: int) -> None:
    """Close SALE_ID now; admissions are revoked and fans in line are told it closed."""
    from app.queue.models import CloseReason
    from app.queue.service import close_sale

    sale = _run(lambda state: close_sale(state, sale_id=sale_id, reason=CloseReason.manual))
    console.print(f"[green]sale {sale.id} is closed[/green]")


@sale_app.command("set-rate")
def set_rate_(
    sale_id: int,
    rate: float = typer.Argument(..., help="Fans admitted per second (0 pauses admission)"),
    auto: bool = typer.Option(
        False, "--auto", help="Let the backpressure controller move it from here"
    ),
) -> None:
    """Set the admission rate of SALE_ID (pinned unless --auto)."""
    from app.queue.schemas import RateSet
    from app.queue.service import set_rate

    try:
        body = RateSet(rate=rate, mode="auto" if auto else "manual")
    except ValidationError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    result = _run(lambda state: set_rate(state, sale_id=sale_id, data=body))
    console.print(f"[green]sale {sale_id}: {result.rate:g} fans/s ({result.mode})[/green]")


@sale_app.command("show")
def show(sale_id: int) -> None:
    """Queue figures of SALE_ID."""
    from app.queue.service import sale_stats

    stats = _run(lambda state: sale_stats(state, sale_id=sale_id))
    table = Table(title=f"sale {sale_id}", show_header=False)
    for name, value in stats.model_dump().items():
        table.add_row(name, "-" if value is None else str(value))
    console.print(table)
