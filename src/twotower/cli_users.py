"""`twotower users`: account deletion from the command line (as DELETE /v1/users/{id})."""

from __future__ import annotations

from typing import Annotated

import typer

from twotower import db
from twotower.config import Settings
from twotower.console import make_console
from twotower.errors import InvalidInput

users_app = typer.Typer(no_args_is_help=True, help="Users: forget one (account deletion).")
console = make_console()


@users_app.command("delete")
def users_delete(
    user_id: Annotated[str, typer.Argument(help="the user to forget")],
    yes: Annotated[bool, typer.Option("--yes", help="confirm: this cannot be undone")] = False,
) -> None:
    """Delete everything twotower holds about USER_ID (its vectors of every version, its served
    lists) in one transaction. The app's own tables (profiles, decisions) are the app's."""
    from twotower.users import forget

    if not yes:
        raise InvalidInput(f"this forgets {user_id!r} for good: run again with --yes")
    with db.connection(Settings()) as conn:
        db.ensure_schema(conn)
        deleted = forget(conn, user_id)
    rows = ", ".join(f"{t}: {n}" for t, n in deleted.items())
    console.print(f"forgot {user_id}: {sum(deleted.values())} rows ({rows})", soft_wrap=True, highlight=False)
