"""Opening a freshly built database while another process reads it, as a second worker does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tools.support import build_support_db, open_support_db


def test_a_fresh_database_is_built_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "support.db"
    build_support_db(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_second_worker_opens_the_database_while_the_first_is_reading(tmp_path: Path) -> None:
    # The throughput benchmark's second worker once failed with "database is locked": opening
    # converted the file to WAL, which needs the file to itself, while the first worker was in
    # a read. The file is now WAL from the start, so opening never converts it.
    path = tmp_path / "support.db"
    build_support_db(path)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM orders").fetchone()  # holds a read snapshot
    try:
        conn = open_support_db(path)
        conn.close()
        runner = Runner(Home(tmp_path))
        result = runner.start("support", next(t for t in get_workflow("support").sample_tickets()
                                              if t.ticket_id == "TKT-1001"),
                              requester="ops@signoff.local")
        assert result.status == "resolved"
        runner.close()
    finally:
        reader.execute("COMMIT")
        reader.close()
