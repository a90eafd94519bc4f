"""`signoff db upgrade` and `signoff db status`: the stores' schemas, on SQLite or PostgreSQL.

On SQLite (the default) every store also upgrades itself when it is first opened, so there is
nothing to run; on PostgreSQL (SIGNOFF_DATABASE_URL) a store whose schema is behind refuses to
open until `signoff db upgrade` has run.
"""

from __future__ import annotations

from contextlib import closing

import typer

from cli.errors import read_only
from cli.main import GuardedTyper, app, home, out

db_app = GuardedTyper(no_args_is_help=True,
                      help="The stores' schemas: create or upgrade them, or show where they are.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade every store's schema (idempotent; safe to run on every deploy).
    Prints each `store vN` applied, or that everything is up to date.

    Example: SIGNOFF_DATABASE_URL=postgresql://signoff@db.internal/signoff signoff db upgrade
    """
    with closing(home().open_backend()) as backend:
        applied = backend.upgrade()
        where = backend.describe()
    for step in applied:
        out.print(step)
    out.print(f"{where}: {'upgraded' if applied else 'up to date'}")


@db_app.command("status")
@read_only
def db_status() -> None:
    """Show each store's schema version, whether it is current or behind, and where it is
    (a file, or the database with its password hidden and the schema).

    Example: signoff db status
    """
    with closing(home().open_backend()) as backend:
        found = backend.status()
        sqlite = backend.dialect == "sqlite"
    for store in found:
        state = "current" if store.current else (
            f"behind v{store.want}: " + ("upgraded when first opened, or by `signoff db "
                                         "upgrade`" if sqlite else "run `signoff db upgrade`"))
        out.print(f"{store.store} v{store.have} {state} ({store.where})", soft_wrap=True)
    if not all(store.current for store in found) and not sqlite:
        typer.echo("note: stores that are behind refuse to open until `signoff db upgrade` "
                   "has run", err=True)
