"""`signoff db upgrade` and `signoff db status` on SQLite and PostgreSQL: versioned, idempotent,
one upgrader at a time; a store behind its version refuses to open on Postgres; an unusable URL
is exit 3 in one line with the password hidden; a control.db from before versions opens."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from checkpoints.backend import PostgresBackend
from checkpoints.runs import RunStore
from graph.runner import Home
from tests.cli_calls import one_error_line, signoff
from tests.pg import pg_schemas

STORES = ("audit", "control", "traces")
"""signoff's own stores, in the order `db status` lists them (the checkpoints last)."""


def test_db_upgrade_and_status_on_sqlite(home: Path) -> None:
    before = signoff("db", "status")
    assert before.exit_code == 0, before.output
    assert before.stdout.splitlines() == [
        f"{store} v0 behind v1: upgraded when first opened, or by `signoff db upgrade` "
        f"({home / f'{store}.db'})" for store in STORES]
    first = signoff("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [*(f"{store} v1" for store in STORES), f"{home}: upgraded"]
    again = signoff("db", "upgrade")
    assert again.exit_code == 0 and again.stdout.splitlines() == [f"{home}: up to date"]
    after = signoff("db", "status")
    assert after.stdout.splitlines() == [f"{store} v1 current ({home / f'{store}.db'})"
                                         for store in STORES]


def test_db_upgrade_and_status_on_postgres(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pg_schemas() as (url, prefix):
        monkeypatch.setenv("SIGNOFF_DATABASE_URL", url)
        monkeypatch.setenv("SIGNOFF_DB_SCHEMA_PREFIX", prefix)
        refused = signoff("runs")
        assert refused.exit_code == 3
        assert one_error_line(refused) == (
            f"error: {url} holds the control schema at version 0, this signoff needs 1: "
            "run `signoff db upgrade`")
        behind = signoff("db", "status")
        assert behind.exit_code == 0, behind.output
        assert behind.stdout.splitlines() == [
            *(f"{store} v0 behind v1: run `signoff db upgrade` ({url} schema {prefix}{store})"
              for store in STORES),
            f"checkpoints v0 behind v10: run `signoff db upgrade` ({url} schema "
            f"{prefix}checkpoints)"]

        first = signoff("db", "upgrade")
        assert first.exit_code == 0, first.output
        assert first.stdout.splitlines() == [*(f"{store} v1" for store in STORES),
                                             "checkpoints v10", f"{url}: upgraded"]
        again = signoff("db", "upgrade")
        assert again.stdout.splitlines() == [f"{url}: up to date"]
        current = signoff("db", "status")
        assert current.stdout.splitlines() == [
            *(f"{store} v1 current ({url} schema {prefix}{store})" for store in STORES),
            f"checkpoints v10 current ({url} schema {prefix}checkpoints)"]
        assert signoff("runs").exit_code == 0
        assert not (home / "control.db").exists()  # the registry is in Postgres


def test_two_upgrades_at_once_apply_each_version_once() -> None:
    with pg_schemas() as (url, prefix):
        applied: list[list[str]] = []

        def upgrade() -> None:
            backend = PostgresBackend(url, schema_prefix=prefix)
            try:
                applied.append(backend.upgrade())
            finally:
                backend.close()

        threads = [threading.Thread(target=upgrade) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(applied) == [[], [*(f"{store} v1" for store in STORES), "checkpoints v10"]]


@pytest.mark.parametrize("url, shown", [
    ("postgresql://signoff:s3cret@127.0.0.1:1/signoff",
     "error: cannot reach postgresql://signoff:***@127.0.0.1:1/signoff: connection failed"),
    ("mysql://signoff:s3cret@db/signoff",
     "error: SIGNOFF_DATABASE_URL must be a postgresql:// URL (or unset for SQLite under "
     "SIGNOFF_HOME), not 'mysql://signoff:***@db/signoff'"),
])
@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "status"], ["runs"]])
def test_an_unusable_database_url_is_3_in_one_line(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                   url: str, shown: str,
                                                   command: list[str]) -> None:
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", url)
    result = signoff(*command)
    assert result.exit_code == 3, result.output
    assert one_error_line(result).startswith(shown)
    assert "s3cret" not in result.output


def test_a_bad_pool_size_names_the_variable(home: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_DB_POOL_SIZE", "lots")
    result = signoff("db", "status")
    assert result.exit_code == 1
    assert one_error_line(result) == ("error: SIGNOFF_DB_POOL_SIZE must be a whole number "
                                      "from 1, not 'lots'")


OLD_CONTROL_DDL = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL,
    workflow_version TEXT NOT NULL, tenant_id TEXT NOT NULL, ticket_id TEXT, customer_id TEXT,
    requester TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, pending TEXT,
    policy_version TEXT, inputs TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    lease_owner TEXT, lease_expires REAL);
INSERT INTO runs VALUES ('run-0ld0000001', 'support', '1', 'acme', 'TKT-1001', 'C-1',
    'ops@acme.example', 'resolved', NULL, NULL, NULL, '{}', 1.0, 2.0, NULL, NULL);
"""


def test_a_control_db_from_before_versions_opens_and_is_stamped(home: Path) -> None:
    home.mkdir(parents=True)
    with sqlite3.connect(home / "control.db") as conn:
        conn.executescript(OLD_CONTROL_DDL)
    assert "control v0 behind v1" in signoff("db", "status").stdout
    backend = Home(home).open_backend()
    store = RunStore.open(backend)
    try:
        old = store.get("run-0ld0000001")
        assert (old.status, old.requester_role, old.models) == ("resolved", None, None)
        store.set_kill("*", by="oncall@acme.example", reason="drill")  # the new tables work
    finally:
        store.close()
        backend.close()
    assert "\ncontrol v1 current" in signoff("db", "status").stdout
    assert "run-0ld0000001" in signoff("runs").stdout


def test_a_server_error_mid_command_is_3_in_one_line(home: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    with pg_schemas() as (url, prefix):
        monkeypatch.setenv("SIGNOFF_DATABASE_URL", url)
        monkeypatch.setenv("SIGNOFF_DB_SCHEMA_PREFIX", prefix)
        assert signoff("db", "upgrade").exit_code == 0
        with psycopg.connect(url, autocommit=True) as conn:  # a table gone behind its back
            conn.execute(f'DROP TABLE "{prefix}control".runs')
        result = signoff("runs")
        assert result.exit_code == 3, result.output
        assert one_error_line(result) == ('error: database error: relation "runs" does not '
                                          'exist (SIGNOFF_DATABASE_URL)')
