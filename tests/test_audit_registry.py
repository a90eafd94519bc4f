"""The run registry keeps the audit log's head as its writers last saw it, so a plain
`signoff audit verify` (no --head) notices audit.db deleted, cut short or rebuilt."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from graph.runner import Home
from tests.stores import execute


@pytest.fixture
def written(home: Path) -> Path:
    cli = CliRunner()
    for ticket in ("TKT-1001", "TKT-1003"):
        assert cli.invoke(app, ["run", ticket]).exit_code == 0
    return home


@pytest.fixture
def written_on(backend_home: Home) -> Home:
    """Two runs' entries, the audit log on each backend of the grid (the registry keeping
    its head is control.db in the data directory either way, for now)."""
    cli = CliRunner()
    for ticket in ("TKT-1001", "TKT-1003"):
        assert cli.invoke(app, ["run", ticket]).exit_code == 0
    return backend_home


def newest_seq(home: Home) -> int:
    return int(execute(home, "audit", "SELECT MAX(seq) FROM audit")[0][0])


def verify() -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", "verify"])
    return result.exit_code, result.output.strip()


def entries(home: Path) -> int:
    with sqlite3.connect(home / "audit.db") as conn:
        return conn.execute("SELECT MAX(seq) FROM audit").fetchone()[0]


def test_an_untouched_log_verifies_against_the_registry(written_on: Home) -> None:
    code, text = verify()
    newest = newest_seq(written_on)
    assert code == 0, text
    assert text == (f"audit log intact: {newest} entries, and holds entry {newest}, the newest "
                    "the run registry saw written")


def test_a_deleted_log_is_detected(written: Path) -> None:
    newest = entries(written)
    for suffix in ("", "-wal", "-shm"):
        (written / f"audit.db{suffix}").unlink(missing_ok=True)
    code, text = verify()
    assert code == 1, text
    assert text.startswith(f"audit log tampered: {written / 'audit.db'} is missing, but the run "
                           f"registry saw {newest} entries written")


def test_a_log_cut_short_is_detected(written_on: Home) -> None:
    newest = newest_seq(written_on)
    execute(written_on, "audit", "DELETE FROM audit WHERE seq > ?", (newest - 5,))
    code, text = verify()
    assert code == 1, text
    assert text.startswith(f"audit log tampered: entry {newest}: the pinned entry is missing: "
                           f"the log ends at {newest - 5}")


def test_a_log_emptied_and_rebuilt_is_detected(written: Path) -> None:
    with sqlite3.connect(written / "audit.db") as conn:
        conn.execute("DELETE FROM audit")
    code, text = verify()
    assert code == 1, text
    assert "the pinned entry is missing" in text


def test_a_purge_keeps_the_log_verifiable(written_on: Home) -> None:
    purged = CliRunner().invoke(app, ["traces-purge", "--older-than-days", "0"])
    assert purged.exit_code == 0, purged.output
    code, text = verify()
    assert code == 0, text
    newest = newest_seq(written_on)  # the purge's own entry: the registry keeps it as its head
    assert text.endswith(f"holds entry {newest}, the newest the run registry saw written")
