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


_register_stack()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
