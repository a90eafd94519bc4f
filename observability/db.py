"""SQLite connections for the trace store and the audit log, and the errors they raise."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

TRACES_FILE = "traces.db"
AUDIT_FILE = "audit.db"


class StoreError(Exception):
    """A trace or audit database is missing or unreadable; the message is one line."""


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, non-JSON values as strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """One autocommit connection in WAL mode; callers open their own short transactions.

    With `create=False` a missing file raises StoreError instead of creating an empty db.
    """
    if not create and not path.is_file():
        raise StoreError(f"no database at {path}")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    # The runner may report events from LangGraph's worker threads; callers hold a lock.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives an application crash; it skips the fsync per commit.
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"cannot read {path}: {exc}") from exc
    return conn


def checkpoint_and_close(conn: sqlite3.Connection) -> None:
    """Fold the WAL into the main file and close, so the file alone holds the data."""
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
