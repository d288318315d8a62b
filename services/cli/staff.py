"""``homecare staff``: the web console's staff accounts, from a terminal (the first admin's, say)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

if TYPE_CHECKING:
    import asyncpg

app = typer.Typer(no_args_is_help=True, help="The web console's staff accounts.")


T = TypeVar("T")


async def _with_pool(work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    from services.console import app as console_app
    from services.runtime.db import create_pool, migrate
    from services.runtime.settings import load

    settings = load("console")
    pool = await create_pool(settings.service_dsn, schema="console", application="homecare-cli", size=2, timeout=30)
    try:
        await migrate(pool, "console", Path(console_app.__file__).parent / "migrations")
        return await work(pool)
    finally:
        await pool.close()


@app.command("add")
def add(
    username: str = typer.Argument(..., help="Sign-in name: lowercase letters, digits, . _ -"),
    name: str = typer.Option(..., "--name", help="The person's name, as shown in the console"),
    role: str = typer.Option(..., "--role", help="broker, ops or admin"),
    password: str = typer.Option(
        ...,
        envvar="HOMECARE_STAFF_PASSWORD",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="At least 12 characters (or HOMECARE_STAFF_PASSWORD)",
    ),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="An account of that name already there is not an error"),
) -> None:
    """Add a staff account to the console."""
    import asyncio

    from services.console import handlers

    try:
        asyncio.run(
            _with_pool(
                lambda pool: handlers.add_staff(
                    pool, username=username, display_name=name, role=role, password=password, created_by="homecare-cli"
                )
            )
        )
    except handlers.StaffExists as exists:
        if not exist_ok:
            raise typer.BadParameter(exists.message, param_hint="username") from None
        typer.echo(f"staff account {username.strip().lower()} already exists; left as it is")
        return
    except handlers.Refused as refused:
        raise typer.BadParameter(refused.message, param_hint=refused.field) from None
    typer.echo(f"staff account {username.strip().lower()} ({role}) added")
