"""`signoff db upgrade` and `signoff db status`: the stores' schemas, on SQLite or PostgreSQL;
`signoff migrate --to postgresql://...`: a SQLite home moved to PostgreSQL.

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


@app.command()
@read_only
def migrate(to: str = typer.Option(..., "--to", metavar="postgresql://...",
                                   help="The PostgreSQL database to copy SIGNOFF_HOME into "
                                        "(its schemas under SIGNOFF_DB_SCHEMA_PREFIX)."),
            ) -> None:
    """Copy the SQLite home (SIGNOFF_HOME) into an empty PostgreSQL database: runs, users and
    tokens, kill switches, checkpoints, each installed workflow's data and ledger, traces and
    the audit log (its chain verifies there with the same head). Upgrades the target's schemas
    first, copies in one transaction, then verifies; refuses a target that already holds runs,
    audit entries, checkpoints or mutations (nothing is changed). Stop every process using
    SIGNOFF_HOME first; the home itself is left as it was.

    Example: signoff migrate --to postgresql://signoff@db.internal/signoff
    """
    from urllib.parse import urlsplit

    from checkpoints.backend import PostgresBackend, redact_url
    from checkpoints.migrate import migrate_home
    from graph.errors import StoreUnavailable
    from graph.workflows import get_workflow, workflow_names

    if urlsplit(to).scheme not in ("postgresql", "postgres"):
        raise StoreUnavailable(f"--to must be a postgresql:// URL, not {redact_url(to)!r}")
    source = home()
    target = PostgresBackend(to, schema_prefix=source.schema_prefix)
    with closing(target):
        done = migrate_home(source.root, target, [get_workflow(n) for n in workflow_names()])
    out.print(f"{source.root} -> {target.describe()} (schema prefix {target.schema_prefix})",
              soft_wrap=True)
    for copy in done.stores:
        rows = ", ".join(f"{table} {count}" for table, count in sorted(copy.rows.items()))
        out.print(f"{copy.store}: {sum(copy.rows.values())} row(s) ({rows})", soft_wrap=True)
    cp = done.checkpoints
    out.print(f"checkpoints: {cp.threads} thread(s), {cp.checkpoints} checkpoint(s), "
              f"{cp.writes} pending write(s)")
    for name in done.not_copied:
        typer.echo(f"note: {name} was not copied (no store or installed workflow names it; "
                   "a plugin's file needs SIGNOFF_WORKFLOWS)", err=True)
    out.print(f"verified: audit ok ({done.audit_entries} entries, head {done.audit_head}), "
              f"runs {done.runs[0]} = {done.runs[1]}", soft_wrap=True)
