"""Read-only access to an existing trace store, for search, report, purge and export."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from observability.db import TRACES_FILE, StoreError, checkpoint_and_close, connect


@contextmanager
def open_traces(home: Path) -> Iterator[sqlite3.Connection]:
    """Yield a connection to `home/traces.db`; missing or corrupt files raise StoreError."""
    path = Path(home) / TRACES_FILE
    conn = connect(path, create=False)
    conn.row_factory = sqlite3.Row
    try:
        if (
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
            ).fetchone()
            is None
        ):
            raise StoreError(f"{path} is not a signoff trace store (no runs table)")
        yield conn
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    finally:
        checkpoint_and_close(conn)
