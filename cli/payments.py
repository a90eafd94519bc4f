"""`signoff payments ...` (the sample payments service) and `signoff credentials rotate`.

    signoff payments serve --port 8766 --db payments.db [--faults faults.json]
    signoff payments key --db payments.db --scope refunds:write --scope refunds:read --out FILE
    signoff credentials rotate payments
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.main import GuardedTyper
from graph.errors import SignoffError

if TYPE_CHECKING:  # the service and its client load when a command runs, not for --help
    from tools.payments.faults import PaymentsFaults

payments_app = GuardedTyper(no_args_is_help=True,
                            help="The sample payments service (an external API on loopback).")
credentials_app = GuardedTyper(no_args_is_help=True, help="Credentials the tools present.")

DEFAULT_SCOPES = ["refunds:write", "refunds:read", "keys:roll"]
"""What create_refund_request needs: create, look up (to reconcile), roll its own key."""


def register(app: typer.Typer) -> None:
    app.add_typer(payments_app, name="payments")
    app.add_typer(credentials_app, name="credentials")


def _faults(source: str | None) -> PaymentsFaults | None:
    from tools.payments.faults import PaymentsFaults

    text = source if source is not None else os.environ.get("SIGNOFF_PAYMENTS_FAULTS")
    if not text:
        return None
    try:
        return PaymentsFaults.parse(text)
    except ValueError as exc:
        raise SignoffError(str(exc)) from None


@payments_app.command("serve")
def payments_serve(port: int = typer.Option(8766, min=0, max=65535),
                   host: str = typer.Option("127.0.0.1", help="Loopback by default."),
                   db: str = typer.Option("payments.db", help="The service's SQLite file."),
                   faults: str = typer.Option(None, help="JSON fault settings or a file of "
                                              "them (default: SIGNOFF_PAYMENTS_FAULTS).")) -> None:
    """Run the sample payments API in the foreground until interrupted.

    Example: signoff payments serve --port 8766 --db /tmp/payments.db
    """
    from tools.payments.server import serve

    plan = _faults(faults)
    try:
        serve(host, port, Path(db), plan, ready=lambda s: typer.echo(
            f"payments API on http://{host}:{s.server_address[1]} (db {db})", err=True))
    except OSError as exc:
        raise SignoffError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
    except KeyboardInterrupt:
        pass


@payments_app.command("key")
def payments_key(db: str = typer.Option(..., help="The service's SQLite file."),
                 scope: list[str] = typer.Option(  # noqa: B008 - typer's declaration
                     None, help="Repeatable (default: refunds:write, refunds:read, keys:roll)."),
                 out: str = typer.Option(..., help="Secrets file to write the key to.")) -> None:
    """Create an API key directly in the service's database and write it to a secrets file.

    Example: signoff payments key --db /tmp/payments.db --out ~/.config/signoff/payments.key
    """
    from tools.payments import store
    from tools.payments.client import write_secret

    try:
        conn = store.connect(db)
        try:
            key, secret = store.create_key(conn, scope or DEFAULT_SCOPES)
        finally:
            conn.close()
    except ValueError as exc:
        raise SignoffError(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise SignoffError(f"cannot use {db}: {exc}") from None
    write_secret(Path(out).expanduser(), secret)
    typer.echo(f"key {key.id} ({', '.join(sorted(key.scopes))}) written to {out}")


@credentials_app.command("rotate")
def credentials_rotate(system: str = typer.Argument(..., help="Which credential: payments.")
                       ) -> None:
    """Issue a new key at the API, switch the tools' secrets file to it, revoke the old one.

    Example: signoff credentials rotate payments
    """
    from tools.base import ToolError
    from tools.payments.client import ENV_URL, PaymentsClient, PaymentsSettings, rotate_key

    if system != "payments":
        raise SignoffError(f"unknown credential {system!r} (known: payments)")
    settings = PaymentsSettings.from_env(os.environ)
    if settings is None:
        raise SignoffError(f"{ENV_URL} is not set: there is no payments API to rotate at")
    problem = settings.problem()
    if problem:
        raise SignoffError(problem)
    client = PaymentsClient(settings)
    try:
        rotation = rotate_key(client)
    except ToolError as exc:
        raise SignoffError(str(exc)) from None
    typer.echo(f"payments key rotated: now {rotation.new_key_id} in {settings.key_file}; "
               "the old key is revoked")
