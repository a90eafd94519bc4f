"""Accounts of the service, in the control database beside the run registry: users and their
(role, tenant) grants, bearer tokens (only their sha256 is stored) and inbox sessions.

A principal (graph.identity-normalised email, roles, tenants) is built from a token or a
session here and is the only thing the service's decisions read.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from checkpoints.backend import Backend
from checkpoints.control_schema import STORE
from checkpoints.sql import Connection
from graph.errors import SignoffError
from graph.identity import normalize_identity
from verifiers.aggregates import parse_window

TOKEN_PREFIX = "so_"
SESSION_TTL_S = 8 * 3600.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Unauthenticated(SignoffError):
    """No usable credential: missing, unknown, expired or revoked."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, as authentication established it."""

    email: str
    """The normalised identity (graph.identity.normalize_identity)."""
    grants: tuple[tuple[str, str], ...]
    """(role, tenant) pairs; tenant "*" means every tenant."""
    token_id: str
    """The token the principal signed in with (also behind an inbox session)."""

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(sorted({tenant for _role, tenant in self.grants}))

    def sees(self, tenant_id: str) -> bool:
        """True when the principal may see runs of `tenant_id`."""
        return any(tenant in (tenant_id, "*") for _role, tenant in self.grants)

    def roles_for(self, tenant_id: str) -> list[str]:
        """The roles the principal holds for runs of `tenant_id`."""
        return sorted({role for role, tenant in self.grants if tenant in (tenant_id, "*")})


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise SignoffError(f"{kind} {value!r} must be lower-case letters, digits, '_', '.' or "
                           "'-' (at most 64), e.g. support_lead")
    return value


class AccountStore:
    """Users, tokens and sessions in the control store (control.db, or the `<prefix>control`
    schema on Postgres); owns `conn`."""

    def __init__(self, conn: Connection, *, clock: Callable[[], float] = time.time) -> None:
        self.conn = conn
        self.clock = clock

    @classmethod
    def open(cls, backend: Backend, *, clock: Callable[[], float] = time.time) -> AccountStore:
        """The accounts on `backend`'s control store."""
        return cls(backend.connect(STORE), clock=clock)

    def close(self) -> None:
        self.conn.close()

    # Users -----------------------------------------------------------------------------------

    def add_user(self, email: str, *, role: str, tenant_id: str) -> str:
        """Create the user if new and grant them `role` for `tenant_id`; returns the email."""
        who = normalize_identity(email)
        if "@" not in who:
            raise SignoffError(f"{email!r} is not an email address")
        grant = (_name("role", role), tenant_id if tenant_id == "*" else _name("tenant",
                                                                                tenant_id))
        self.conn.execute("INSERT INTO users (email, created_at) VALUES (?, ?)"
                          " ON CONFLICT (email) DO NOTHING", (who, self.clock()))
        self.conn.execute("INSERT INTO user_grants (email, role, tenant_id) VALUES (?, ?, ?)"
                          " ON CONFLICT (email, role, tenant_id) DO NOTHING", (who, *grant))
        return who

    def remove_grant(self, email: str, *, role: str, tenant_id: str) -> None:
        """Take `role` for `tenant_id` away from the user; their next request reads it."""
        who = self._known(email)
        cur = self.conn.execute("DELETE FROM user_grants WHERE email = ? AND role = ? AND"
                                " tenant_id = ?", (who, role, tenant_id))
        if cur.rowcount == 0:
            raise SignoffError(f"{who} holds no grant {role}@{tenant_id}")

    def grants(self, email: str) -> tuple[tuple[str, str], ...]:
        rows = self.conn.execute("SELECT role, tenant_id FROM user_grants WHERE email = ?"
                                 " ORDER BY role, tenant_id", (email,))
        return tuple((role, tenant) for role, tenant in rows)

    def users(self) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        emails = [r[0] for r in self.conn.execute("SELECT email FROM users ORDER BY email")]
        return [(email, self.grants(email)) for email in emails]

    def _known(self, email: str) -> str:
        who = normalize_identity(email)
        if self.conn.execute("SELECT 1 FROM users WHERE email = ?", (who,)).fetchone() is None:
            raise SignoffError(f"no user {who!r} (add one with `signoff users add`)")
        return who

    # Tokens ----------------------------------------------------------------------------------

    def create_token(self, email: str, *, expires_in: str | None = None) -> tuple[str, str]:
        """A new bearer token for the user: (token_id, secret). The secret is returned once
        and only its sha256 is kept."""
        who = self._known(email)
        expires_at = None
        if expires_in is not None:
            try:
                expires_at = self.clock() + parse_window(expires_in)
            except ValueError:
                raise SignoffError(f"--expires-in {expires_in!r} is not a duration like 90m, "
                                   "24h or 30d") from None
        token_id = f"tok-{secrets.token_hex(5)}"
        secret = f"{TOKEN_PREFIX}{secrets.token_urlsafe(32)}"
        self.conn.execute(
            "INSERT INTO api_tokens (token_id, email, token_sha256, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)", (token_id, who, _sha256(secret), self.clock(), expires_at))
        return token_id, secret

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token (and end the inbox sessions signed in with it)."""
        cur = self.conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE token_id = ?"
                                " AND revoked_at IS NULL", (self.clock(), token_id))
        if cur.rowcount == 0:
            raise SignoffError(f"no live token {token_id!r} (see `signoff tokens list`)")
        self.conn.execute("DELETE FROM inbox_sessions WHERE token_id = ?", (token_id,))

    def tokens(self) -> list[dict[str, object]]:
        rows = self.conn.execute("SELECT token_id, email, created_at, expires_at, revoked_at"
                                 " FROM api_tokens ORDER BY created_at, token_id")
        keys = ("token_id", "email", "created_at", "expires_at", "revoked_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def authenticate(self, secret: str | None) -> Principal:
        """The principal of a bearer token; Unauthenticated when it is missing, unknown,
        expired or revoked."""
        if not secret:
            raise Unauthenticated("a bearer token is required (signoff tokens create EMAIL)")
        row = self.conn.execute("SELECT token_id, email, expires_at, revoked_at FROM api_tokens"
                                " WHERE token_sha256 = ?", (_sha256(secret),)).fetchone()
        if row is None:
            raise Unauthenticated("unknown token")
        token_id, email, expires_at, revoked_at = row
        if revoked_at is not None:
            raise Unauthenticated("the token was revoked")
        if expires_at is not None and expires_at <= self.clock():
            raise Unauthenticated("the token has expired")
        return Principal(email=email, grants=self.grants(email), token_id=token_id)

    # Inbox sessions --------------------------------------------------------------------------

    def open_session(self, principal: Principal, *, ttl: float = SESSION_TTL_S) -> str:
        """A new session for a signed-in principal; returns the cookie value (kept hashed)."""
        session = secrets.token_urlsafe(32)
        now = self.clock()
        self.conn.execute(
            "INSERT INTO inbox_sessions (session_sha256, email, token_id, csrf, created_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (_sha256(session), principal.email, principal.token_id, secrets.token_urlsafe(24),
             now, now + ttl))
        return session

    def session(self, cookie: str | None) -> tuple[Principal, str]:
        """(principal, CSRF token) of a live session; Unauthenticated otherwise. The token
        behind the session is checked again, so revoking it ends the session."""
        if not cookie:
            raise Unauthenticated("not signed in")
        row = self.conn.execute("SELECT email, token_id, csrf, expires_at FROM inbox_sessions"
                                " WHERE session_sha256 = ?", (_sha256(cookie),)).fetchone()
        if row is None or row[3] <= self.clock():
            raise Unauthenticated("the session has ended; sign in again")
        email, token_id, csrf, _ = row
        token = self.conn.execute("SELECT expires_at, revoked_at FROM api_tokens"
                                  " WHERE token_id = ?", (token_id,)).fetchone()
        if token is None or token[1] is not None or (token[0] is not None
                                                     and token[0] <= self.clock()):
            raise Unauthenticated("the token behind this session is no longer valid")
        return Principal(email=email, grants=self.grants(email), token_id=token_id), csrf

    def close_session(self, cookie: str | None) -> None:
        if cookie:
            self.conn.execute("DELETE FROM inbox_sessions WHERE session_sha256 = ?",
                              (_sha256(cookie),))
