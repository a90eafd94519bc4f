"""`signoff users` and `signoff tokens`: accounts in the control store (control.db, or
PostgreSQL), a token shown once and kept hashed, expiry and revocation, and one-line errors that
change nothing; on each backend of the grid."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import pytest
from typer.testing import CliRunner

from checkpoints.accounts import AccountStore, Unauthenticated
from cli.main import app
from graph.runner import Home


def signoff(*args: str):  # noqa: ANN201 - click Result
    return CliRunner().invoke(app, list(args))


@contextmanager
def accounts_of(home: Home) -> Iterator[AccountStore]:
    with closing(home.open_backend()) as backend, closing(AccountStore.open(backend)) as store:
        yield store


def count(home: Home, sql: str) -> Any:
    with accounts_of(home) as accounts:
        return accounts.conn.execute(sql).fetchone()[0]


def test_users_and_tokens(backend_home: Home) -> None:
    added = signoff("users", "add", "Lead@ACME.example", "--role", "support_lead",
                    "--tenant", "acme")
    assert added.exit_code == 0 and "user lead@acme.example: support_lead@acme" in added.stdout
    signoff("users", "add", "lead@acme.example", "--role", "finance", "--tenant", "globex")
    assert "finance@globex, support_lead@acme" in signoff("users", "list").stdout
    removed = signoff("users", "remove-grant", "lead@acme.example", "--role", "finance",
                      "--tenant", "globex")
    assert removed.exit_code == 0 and "user lead@acme.example: support_lead@acme" in removed.stdout
    one_line_error(signoff("users", "remove-grant", "lead@acme.example", "--role", "finance",
                           "--tenant", "globex"), "holds no grant finance@globex")
    signoff("users", "add", "lead@acme.example", "--role", "finance", "--tenant", "globex")

    created = signoff("tokens", "create", "lead@acme.example", "--expires-in", "30d")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("so_") and "shown once" in created.stderr
    stored = count(backend_home, "SELECT token_sha256 FROM api_tokens")
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in signoff("tokens", "list").stdout

    with accounts_of(backend_home) as accounts:
        principal = accounts.authenticate(secret)
        assert principal.email == "lead@acme.example"
        assert principal.roles_for("acme") == ["support_lead"]
        assert principal.roles_for("globex") == ["finance"] and not principal.sees("initech")
        token_id = principal.token_id
        assert signoff("tokens", "revoke", token_id).exit_code == 0
        with pytest.raises(Unauthenticated, match="revoked"):
            accounts.authenticate(secret)


def one_line_error(result, expected: str) -> None:  # noqa: ANN001
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_account_mistakes_are_one_line_and_change_nothing(backend_home: Home) -> None:
    one_line_error(signoff("tokens", "create", "nobody@acme.example"), "no user")
    one_line_error(signoff("users", "add", "not-an-email", "--role", "x", "--tenant", "acme"),
                   "not an email address")
    one_line_error(signoff("users", "add", "a@acme.example", "--role", "Lead Role",
                           "--tenant", "acme"), "role 'Lead Role'")
    signoff("users", "add", "a@acme.example", "--role", "agent", "--tenant", "acme")
    one_line_error(signoff("tokens", "create", "a@acme.example", "--expires-in", "soon"),
                   "not a duration")
    one_line_error(signoff("tokens", "revoke", "tok-nope"), "no live token")
    assert count(backend_home, "SELECT COUNT(*) FROM api_tokens") == 0
    assert count(backend_home, "SELECT COUNT(*) FROM users") == 1
