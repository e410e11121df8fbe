"""`ticket-rush`: the operators' command line."""

from __future__ import annotations

import asyncio
import getpass
import os

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from sqlalchemy import select

from app.core.config import get_settings
from app.core.problems import ProblemError
from app.queue.cli import sale_app

app = typer.Typer(help="Ticket-Rush operations.", no_args_is_help=True)
console = Console()


@app.callback()
def _use_local_stack() -> None:
    """Commands talk to the local stack when one is up (`.run/stack.env`), unless TR_* is set."""
    from app.devstack import StackError
    from app.devstack.stack import load_stack_env

    try:
        stack_env = load_stack_env(get_settings().run_dir)
    except StackError:
        return
    for key, value in stack_env.items():
        os.environ.setdefault(key, value)
    get_settings.cache_clear()


def _register_stack() -> None:
    from app.devstack.cli import stack_app

    app.add_typer(stack_app, name="stack")


@app.command()
def migrate(revision: str = typer.Argument("head", help="Alembic revision to upgrade to.")) -> None:
    """Apply database migrations (Alembic)."""
    from app.core.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    console.print(f"[green]database at {revision}[/green]")


@app.command()
def seed() -> None:
    """Load agencies, artists, venues and concerts with seat maps (idempotent)."""
    from app.main import build_state
    from app.seed import seed as run_seed

    async def run() -> None:
        state = build_state(get_settings())
        try:
            report = await run_seed(state)
        finally:
            await state.redis.aclose()
            await state.engine.dispose()
        console.print(
            f"seeded: {report.agencies} agencies, {report.artists} artists, "
            f"{report.venues} venues, {report.concerts} concerts, {report.seats} seats"
        )

    asyncio.run(run())


@app.command("create-admin")
def create_admin(
    email: str,
    display_name: str = typer.Option("Admin", help="Name shown for a new account."),
) -> None:
    """Make EMAIL an admin; creates the account (asking for a password) if it does not exist.

    The password comes from TR_ADMIN_PASSWORD or an interactive prompt, never the command line.
    """
    from app.auth.models import Role, User
    from app.auth.schemas import Email
    from app.auth.service import check_password_policy, create_user
    from app.main import build_state

    settings = get_settings()
    try:
        normalized = TypeAdapter(Email).validate_python(email)
    except ValidationError as exc:
        console.print(f"[red]not a valid email address: {email!r}[/red]")
        raise typer.Exit(1) from exc

    async def run() -> None:
        state = build_state(settings)
        try:
            async with state.sessionmaker() as session:
                user = await session.scalar(select(User).where(User.email == normalized))
                if user is not None:
                    user.role = Role.admin
                    await session.commit()
                    console.print(f"[green]{normalized} is now an admin[/green]")
                    return
                password = os.environ.get("TR_ADMIN_PASSWORD") or getpass.getpass("Password: ")
                try:
                    check_password_policy(settings, password, email=normalized)
                except ProblemError as exc:
                    console.print(f"[red]{exc.detail}[/red]")
                    raise typer.Exit(1) from exc
                await create_user(
                    session,
                    email=normalized,
                    password=password,
                    display_name=display_name,
                    role=Role.admin,
                )
                console.print(f"[green]created admin {normalized}[/green]")
        finally:
            await state.redis.aclose()
            await state.engine.dispose()

    asyncio.run(run())


@app.command()
def reconcile(
    concert_id: int | None = typer.Argument(None, help="Concert to check."),
    all_concerts: bool = typer.Option(
        False, "--all", help="Every concert strategy redis_claim has touched."
    ),
    repair: bool = typer.Option(False, "--repair", help="Rebuild drifted inventories from the DB."),
) -> None:
    """Compare the Redis seat/stock inventory of strategy redis_claim with the database.

    Claims accepted but not yet written by the booking consumer are accounted for. Exit code 1
    when differences remain (always without --repair if any were found)."""
    from rich.table import Table
    from sqlalchemy import text

    from app.booking.inventory import (
        Drift,
        Inventory,
        concerts_using_redis_claim,
    )
    from app.booking.inventory import reconcile as run_reconcile
    from app.main import build_state

    if (concert_id is None) == (not all_concerts):
        console.print("[red]give a CONCERT_ID or --all[/red]")
        raise typer.Exit(2)
    settings = get_settings()

    async def run() -> list[Drift]:
        state = build_state(settings)
        try:
            inventory = Inventory(state.redis, state.keys)
            if concert_id is None:
                ids = await concerts_using_redis_claim(inventory, state.engine)
            else:
                async with state.engine.connect() as conn:
                    found = await conn.scalar(
                        text("SELECT 1 FROM concert WHERE id = :c"), {"c": concert_id}
                    )
                if found is None:
                    console.print(f"[red]no concert with id {concert_id}[/red]")
                    raise typer.Exit(2)
                ids = {concert_id}
            return await run_reconcile(
                inventory,
                state.engine,
                ids,
                repair=repair,
                timeout_s=settings.redis_claim_load_timeout_s,
            )
        finally:
            await state.payments.aclose()
            await state.redis.aclose()
            await state.engine.dispose()

    reports = asyncio.run(run())

    def num(value: int | None) -> str:
        return "-" if value is None else str(value)

    def sample(ids: list[int]) -> str:
        return f"{len(ids)} {ids[:5]}{'…' if len(ids) > 5 else ''}" if ids else "0"

    table = Table(title="redis_claim inventory vs. database")
    for column in (
        "concert",
        "state",
        "free seats redis/expected",
        "free only in redis",
        "free only in db",
        "GA redis/expected",
        "pending claims",
    ):
        table.add_column(column)
    for d in reports:
        if d.clean:
            verdict = "[green]repaired[/green]" if d.repaired else "[green]ok[/green]"
        else:
            verdict = "[red]not loaded[/red]" if not d.loaded else "[red]drift[/red]"
        if not d.stable:
            verdict += " [yellow](changing)[/yellow]"
        age = f" (oldest {d.oldest_claim_age_s:.0f} s)" if d.oldest_claim_age_s else ""
        table.add_row(
            str(d.concert_id),
            verdict,
            f"{d.redis_available}/{d.expected_available}"
            if d.loaded
            else f"-/{d.expected_available}",
            sample(d.only_in_redis),
            sample(d.missing_in_redis),
            f"{num(d.redis_ga)}/{num(d.expected_ga)}",
            f"{d.outstanding_claims}{age}",
        )
    console.print(table)
    console.print("expected = database minus the claims the booking consumer has not written yet")
    if not reports:
        console.print("no concert uses strategy redis_claim")
    if any(not d.clean for d in reports):
        raise typer.Exit(1)


_register_stack()
app.add_typer(sale_app, name="sale")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
