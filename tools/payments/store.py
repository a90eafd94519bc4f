"""The payments service's own database: refunds (unique per idempotency key) and API keys
(stored as hashes, scoped to actions, revocable)."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCOPES = frozenset({"refunds:write", "refunds:read", "customers:read", "keys:roll"})
"""Actions a key may be allowed: create refunds, look them up, list customers, roll itself."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT NOT NULL,
    order_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    reason TEXT NOT NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS injected_faults (
    fault TEXT NOT NULL,
    path TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL
);
INSERT OR IGNORE INTO customers VALUES ('cus_0001', 'ada@example.com', 'Ada Lovelace');
"""


@dataclass(frozen=True)
class ApiKey:
    """A key as the service knows it; the secret itself is never stored."""

    id: str
    scopes: frozenset[str]
    created: float


def connect(path: Path | str, *, setup: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode; `setup` creates the schema (a write: once per
    process, not per request)."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    if setup:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
    return conn


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def request_hash(body: dict[str, Any]) -> str:
    return _hash(json.dumps(body, sort_keys=True, separators=(",", ":")))


def create_key(conn: sqlite3.Connection, scopes: Iterable[str]) -> tuple[ApiKey, str]:
    """A new key with `scopes`; returns it and its secret (shown once)."""
    wanted = frozenset(scopes)
    unknown = wanted - SCOPES
    if unknown or not wanted:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}" if unknown
                         else "a key needs at least one scope")
    secret = "sk_test_" + secrets.token_urlsafe(24)
    key = ApiKey(id="key_" + secrets.token_hex(6), scopes=wanted, created=time.time())
    conn.execute("INSERT INTO api_keys (id, secret_hash, scopes, created) VALUES (?,?,?,?)",
                 (key.id, _hash(secret), " ".join(sorted(wanted)), key.created))
    return key, secret


def authenticate(conn: sqlite3.Connection, secret: str) -> ApiKey | None:
    """The live key with this secret, or None (unknown or revoked)."""
    row = conn.execute("SELECT id, scopes, created FROM api_keys WHERE secret_hash = ?"
                       " AND revoked IS NULL", (_hash(secret),)).fetchone()
    if row is None:
        return None
    return ApiKey(id=row["id"], scopes=frozenset(row["scopes"].split()), created=row["created"])


def revoke_key(conn: sqlite3.Connection, key_id: str) -> None:
    conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                 (time.time(), key_id))


def record_fault(conn: sqlite3.Connection, fault: str, path: str) -> None:
    """Keep a count of what was injected, so a drill can show the faults really happened."""
    conn.execute("INSERT INTO injected_faults (fault, path, at) VALUES (?,?,?)",
                 (fault, path, time.time()))


def refund_json(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "object": "refund", "order_id": row["order_id"],
            "amount_cents": row["amount_cents"], "reason": row["reason"],
            "status": row["status"], "idempotency_key": row["idempotency_key"],
            "metadata": json.loads(row["metadata"]), "created": row["created"]}


def refund_by_key(conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM refunds WHERE idempotency_key = ?", (key,)).fetchone()
    return row


def insert_refund(conn: sqlite3.Connection, body: dict[str, Any], key: str | None) -> sqlite3.Row:
    refund_id = "re_" + secrets.token_hex(8)
    conn.execute(
        "INSERT INTO refunds (id, idempotency_key, request_hash, order_id, amount_cents, reason,"
        " metadata, status, created) VALUES (?,?,?,?,?,?,?,'pending',?)",
        (refund_id, key, request_hash(body), body["order_id"], body["amount_cents"],
         body.get("reason", ""), json.dumps(body.get("metadata") or {}), time.time()))
    row: sqlite3.Row = conn.execute("SELECT * FROM refunds WHERE id = ?", (refund_id,)).fetchone()
    return row
