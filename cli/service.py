"""`signoff serve`, `signoff users` and `signoff tokens`: the service edge's commands.

Accounts live in the control database beside the run registry; a token's secret is printed
once and only its sha256 is stored."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from cli.errors import read_only
from cli.main import GuardedTyper, app, build_runner, home, out
from graph.identity import normalize_identity

if TYPE_CHECKING:  # the stores and the service load when a command runs, not for --help
    from checkpoints.accounts import AccountStore

users_app = GuardedTyper(no_args_is_help=True, help="Users of the service and their roles.")
tokens_app = GuardedTyper(no_args_is_help=True,
                          help="Bearer tokens for the API and the inbox.")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")


@contextmanager
def _accounts() -> Iterator[AccountStore]:
    """The accounts on the CLI's backend, closed (with the backend) on exit."""
    from checkpoints.accounts import AccountStore

    root = home()
    root.root.mkdir(parents=True, exist_ok=True)
    with closing(root.open_backend()) as backend, closing(AccountStore.open(backend)) as store:
        yield store


def _when(epoch: object) -> str:
    return "-" if not isinstance(epoch, float | int) else \
        datetime.fromtimestamp(epoch).isoformat(timespec="seconds")


@app.command()
def serve(host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
          port: int = typer.Option(8700, "--port", min=1, max=65535),
          secure_cookies: bool = typer.Option(False, "--secure-cookies",
                                              help="Mark the session cookie Secure (behind "
                                                   "TLS).")) -> None:
    """Serve the REST API (/api/v1) and the approval inbox (/inbox) on the CLI's stores
    (SIGNOFF_HOME, or SIGNOFF_DATABASE_URL's PostgreSQL after `signoff db upgrade`).

    Example: signoff serve --host 127.0.0.1 --port 8700
    """
    import uvicorn

    from service.app import create_app
    from service.core import ServiceSettings

    # The app opens its one backend here, before the port is bound: unreachable or
    # not-upgraded stores end the command with one line (exit 3) and nothing listening.
    application = create_app(ServiceSettings(home=home(), make_runner=build_runner,
                                             secure_cookies=secure_cookies,
                                             workflows=os.environ.get("SIGNOFF_WORKFLOWS", "")))
    stores = application.state.service.runner.backend.describe()
    out.print(f"signoff serving {stores} on http://{host}:{port} "
              f"(inbox: http://{host}:{port}/inbox, API: /api/v1)", soft_wrap=True)
    uvicorn.run(application, host=host, port=port, log_level="warning")


@users_app.command("add")
def users_add(email: str = typer.Argument(..., help="The user's email (their identity)."),
              role: str = typer.Option(..., "--role", help="A policy role, e.g. support_lead."),
              tenant: str = typer.Option(..., "--tenant", help="The tenant ('*' for all).")
              ) -> None:
    """Add a user, or grant an existing user another role for a tenant.

    Example: signoff users add lead@acme.example --role support_lead --tenant acme
    """
    with _accounts() as accounts:
        who = accounts.add_user(email, role=role, tenant_id=tenant)
        grants = ", ".join(f"{r}@{t}" for r, t in accounts.grants(who))
    out.print(f"user {who}: {grants}")


@users_app.command("remove-grant")
def users_remove_grant(email: str = typer.Argument(..., help="The user's email."),
                       role: str = typer.Option(..., "--role"),
                       tenant: str = typer.Option(..., "--tenant")) -> None:
    """Take a (role, tenant) grant away; the user's next request no longer holds it.

    Example: signoff users remove-grant lead@acme.example --role support_lead --tenant acme
    """
    with _accounts() as accounts:
        accounts.remove_grant(email, role=role, tenant_id=tenant)
        grants = ", ".join(f"{r}@{t}" for r, t in accounts.grants(normalize_identity(email)))
    out.print(f"user {normalize_identity(email)}: {grants or 'no grants'}")


@users_app.command("list")
@read_only
def users_list() -> None:
    """List users and their (role, tenant) grants.

    Example: signoff users list
    """
    with _accounts() as accounts:
        for who, grants in accounts.users():
            out.print(f"{who}: {', '.join(f'{r}@{t}' for r, t in grants)}")


@tokens_app.command("create")
def tokens_create(email: str = typer.Argument(..., help="Whose token."),
                  expires_in: str = typer.Option(None, "--expires-in",
                                                 help="e.g. 12h or 30d (default: no expiry)."),
                  ) -> None:
    """Create a bearer token; it is printed once and stored only as its sha256.

    Example: signoff tokens create lead@acme.example --expires-in 30d
    """
    with _accounts() as accounts:
        token_id, secret = accounts.create_token(email, expires_in=expires_in)
    typer.echo(f"token {token_id} for {email} (shown once; keep it secret):", err=True)
    typer.echo(secret)


@tokens_app.command("list")
@read_only
def tokens_list() -> None:
    """List tokens (never their secrets): id, owner, created, expires, revoked.

    Example: signoff tokens list
    """
    with _accounts() as accounts:
        for t in accounts.tokens():
            state = "revoked " + _when(t["revoked_at"]) if t["revoked_at"] else "live"
            out.print(f"{t['token_id']} {t['email']} created {_when(t['created_at'])} "
                      f"expires {_when(t['expires_at'])} {state}")


@tokens_app.command("revoke")
def tokens_revoke(token_id: str = typer.Argument(..., help="The token's id (tok-...).")) -> None:
    """Revoke a token; requests with it get 401 and inbox sessions opened with it end.

    Example: signoff tokens revoke tok-0123456789
    """
    with _accounts() as accounts:
        accounts.revoke_token(token_id)
    out.print(f"token {token_id} revoked")
