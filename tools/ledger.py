"""The idempotency ledger: a mutation and its key commit in one SQLite transaction.

LangGraph re-runs a node from its top on resume and re-runs later nodes on replay, so
exactly-once must come from here. `commit_once` opens an IMMEDIATE transaction on the domain
database, returns the recorded result when the key is already there, and otherwise runs the
tool and inserts the key before committing. A crash before the commit leaves neither the
effect nor the key; a crash after it leaves both.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS mutation_ledger (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    tool TEXT NOT NULL,
    args TEXT NOT NULL,
    result TEXT NOT NULL,
    committed_at REAL NOT NULL
)
"""


def canonical_json(value: Any) -> str:
    """Stable JSON: sorted keys, no whitespace; equal arguments give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def call_digest(tool: str, args: dict[str, Any] | None) -> str:
    """Fingerprint of one proposed call; the gate and the verifier stamp the call they judged
    with it, so execute can refuse a call whose arguments changed afterwards."""
    return hashlib.sha256(f"{tool}\x1f{canonical_json(args)}".encode()).hexdigest()[:24]


def idempotency_key(run_id: str, step: int, tool: str, args: dict[str, Any]) -> str:
    """Derived from the run, the step and the canonical arguments: a replay of the same step
    gets the same key, an edited action (other arguments) a new one."""
    material = f"{run_id}\x1f{step}\x1f{tool}\x1f{canonical_json(args)}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class LedgerOutcome:
    """What commit_once did."""

    result: dict[str, Any]
    replayed: bool
    """True when the key was already committed and the recorded result was returned."""


def ensure_ledger(conn: sqlite3.Connection) -> None:
    """Create the ledger table if it is missing; a read when it exists, so that processes
    opening the database at the same time do not contend for the write lock."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                          " AND name = 'mutation_ledger'").fetchone()
    if exists is None:
        conn.execute(LEDGER_SCHEMA)
        conn.commit()


def recorded(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT result FROM mutation_ledger WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def commit_once(conn: sqlite3.Connection, *, key: str, run_id: str, step: int, tool: str,
                args: dict[str, Any], apply: Callable[[], BaseModel],
                clock: Callable[[], float] = time.time,
                before_commit: Callable[[], None] | None = None) -> LedgerOutcome:
    """Apply a mutation at most once per key. Exceptions from `apply` roll everything back.

    `before_commit` is a fault-injection seam: it runs after the effect and the key are written
    and before COMMIT, so tests can kill the process at the worst moment.
    """
    if conn.in_transaction:
        conn.rollback()  # never build on a transaction someone else left open
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(LEDGER_SCHEMA)  # a no-op once it exists; keeps the ledger self-contained
        previous = recorded(conn, key)
        if previous is not None:
            conn.rollback()
            return LedgerOutcome(previous, replayed=True)
        result = apply().model_dump(mode="json")
        conn.execute(
            "INSERT INTO mutation_ledger (key, run_id, step, tool, args, result, committed_at)"
            " VALUES (?,?,?,?,?,?,?)",
            (key, run_id, step, tool, canonical_json(args), canonical_json(result), clock()),
        )
        if before_commit is not None:
            before_commit()
        conn.commit()
        return LedgerOutcome(result, replayed=False)
    except BaseException:
        conn.rollback()
        raise
