"""Tenant isolation by the database (issue 19, item 3): on PostgreSQL every domain table and the
ledger are under row-level security, and a run's connection sees only its tenant's rows, so a
query that forgot its tenant filter still cannot read or write another tenant's data. On
SQLite the tools' filters are the only isolation: the same query sees every tenant."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from checkpoints.backend import PostgresBackend
from checkpoints.domain import DEFAULT_WORKER_ROLE, for_tenant, install_domain
from checkpoints.sql import PgConnection
from graph.observe import price_fn
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tests.conftest import sample
from tests.pg import as_role, pg_schemas
from tools.support.seed import open_support_db

SUPPORT = get_workflow("support")


@pytest.fixture
def worker(seeded_file: Path) -> Iterator[tuple[PgConnection, str, str]]:
    """(a connection as the worker role to an installed support store, owner URL, prefix)."""
    with pg_schemas() as (url, prefix):
        owner = PostgresBackend(url, schema_prefix=prefix)
        install_domain(owner, "support", seeded_file)
        owner.close()
        backend = PostgresBackend(as_role(url, DEFAULT_WORKER_ROLE), schema_prefix=prefix)
        conn = backend.connect("support")
        try:
            yield conn, url, prefix  # type: ignore[misc]
        finally:
            conn.close()
            backend.close()


# A read and two writes with the tenant filter "forgotten", as a buggy tool would run them.
LEAKY_READ = "SELECT DISTINCT tenant_id FROM orders ORDER BY tenant_id"
LEAKY_UPDATE = "UPDATE tickets SET status = 'closed' WHERE ticket_id = 'TKT-2001'"
LEAKY_INSERT = ("INSERT INTO ticket_notes (note_id, tenant_id, ticket_id, body, visibility,"
                " created_at, run_id) VALUES ('NOTE-99999', 'globex', 'TKT-2001', 'hi',"
                " 'internal', '2026-10-01T00:00:00Z', 'run-x')")


def test_a_query_without_a_tenant_filter_sees_only_the_runs_tenant(
        worker: tuple[PgConnection, str, str]) -> None:
    conn, _, _ = worker
    acme = for_tenant(conn, "acme")
    assert [r[0] for r in acme.execute(LEAKY_READ)] == ["acme"]
    assert acme.execute("SELECT COUNT(*) FROM customers WHERE email = ?",
                        ("elena.kovacs@example.com",)).fetchone()[0] == 0  # globex's
    assert [r[0] for r in for_tenant(conn, "globex").execute(LEAKY_READ)] == ["globex"]


def test_a_write_for_another_tenant_is_refused(worker: tuple[PgConnection, str, str]) -> None:
    import psycopg

    conn, url, prefix = worker
    acme = for_tenant(conn, "acme")
    with acme.transaction():
        assert acme.execute(LEAKY_UPDATE).rowcount == 0  # globex's ticket: not there for acme
    with pytest.raises(psycopg.errors.InsufficientPrivilege,
                       match="new row violates row-level security policy"):
        with acme.transaction():
            acme.execute(LEAKY_INSERT)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        with acme.transaction():  # moving one of its own rows to another tenant
            acme.execute("UPDATE tickets SET tenant_id = 'globex' WHERE ticket_id = 'TKT-1001'")
    # The ledger too: a mutation recorded for another tenant is refused.
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        with acme.transaction():
            acme.execute("INSERT INTO mutation_ledger (key, run_id, step, tool, args, result,"
                         " committed_at, tenant_id) VALUES ('k', 'r', 1, 't', '{}', '{}', 0,"
                         " 'globex')")
    with psycopg.connect(url, options=f"-csearch_path={prefix}support") as owner:
        assert owner.execute("SELECT status FROM tickets WHERE ticket_id = 'TKT-2001'"
                             ).fetchone()[0] == "open"
        assert owner.execute("SELECT COUNT(*) FROM ticket_notes WHERE note_id = 'NOTE-99999'"
                             ).fetchone()[0] == 0


def test_with_no_tenant_set_nothing_is_visible(worker: tuple[PgConnection, str, str]) -> None:
    conn, _, _ = worker
    assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM mutation_ledger").fetchone()[0] == 0
    with pytest.raises(Exception, match="row-level security"):
        conn.execute(LEAKY_INSERT)


def test_the_worker_role_cannot_switch_isolation_off(
        worker: tuple[PgConnection, str, str]) -> None:
    import psycopg

    conn, _, _ = worker
    role = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname ="
                        " current_user").fetchone()
    assert tuple(role) == (False, False)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
        conn.execute("ALTER TABLE orders DISABLE ROW LEVEL SECURITY")


def test_on_sqlite_the_same_query_sees_every_tenant(seeded_file: Path,
                                                   tmp_path: Path) -> None:
    """Why PostgreSQL is the isolation boundary: SQLite has no row-level security."""
    copy = tmp_path / "support.db"
    copy.write_bytes(seeded_file.read_bytes())
    conn = for_tenant(open_support_db(copy), "acme")
    assert isinstance(conn, sqlite3.Connection)
    assert [r[0] for r in conn.execute(LEAKY_READ)] == ["acme", "globex"]
    assert conn.execute(LEAKY_UPDATE).rowcount == 1
    conn.rollback()
    conn.close()


def test_runs_as_the_worker_role_keep_to_their_tenant(tmp_path: Path) -> None:
    """Runs driven as the worker role: each transaction carries the run's tenant, so every
    row a run writes is its tenant's, and an acme run asking about globex's order finds none
    of it (the cross-tenant lookup the scope check makes sees no row on Postgres)."""
    with pg_schemas() as (url, prefix):
        owner_home = Home(tmp_path, database_url=url, schema_prefix=prefix)
        with closing(owner_home.open_backend()) as backend:
            backend.upgrade()  # `signoff db upgrade`, as the owner
        owner = Runner(owner_home, price=price_fn())
        owner.ensure_domain_db(SUPPORT, reset=True)
        owner.close()
        worker_home = Home(tmp_path, database_url=as_role(url, DEFAULT_WORKER_ROLE),
                           schema_prefix=prefix)
        runner = Runner(worker_home, price=price_fn())
        try:
            results = {t: runner.start("support", sample(t), requester="ops@signoff.local")
                       for t in ("TKT-1001", "TKT-2001", "TKT-1008")}
        finally:
            runner.close()
        assert results["TKT-1001"].status == results["TKT-2001"].status == "resolved"
        # On SQLite the gate names the other tenant; here its order is simply not found, and
        # the run hands the ticket to a human (its one mutation is that escalation).
        assert results["TKT-1008"].status == "escalated"
        import psycopg

        with psycopg.connect(url, options=f"-csearch_path={prefix}support") as conn:
            rows: list[Any] = conn.execute(
                "SELECT tenant_id, run_id FROM refunds WHERE run_id IS NOT NULL ORDER BY 1"
            ).fetchall()
            ledger = conn.execute("SELECT DISTINCT tenant_id FROM mutation_ledger ORDER BY 1"
                                  ).fetchall()
            tools = conn.execute("SELECT tool FROM mutation_ledger WHERE run_id = %s",
                                 (results["TKT-1008"].run_id,)).fetchall()
        assert [(t, r) for t, r in rows] == [("acme", results["TKT-1001"].run_id),
                                             ("globex", results["TKT-2001"].run_id)]
        assert [r[0] for r in ledger] == ["acme", "globex"]
        assert [r[0] for r in tools] == ["escalate_to_human"]


def test_the_worker_role_may_not_install_data(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Installing creates tables, which only the owner role does: the worker gets one line
    naming the role to use, exit 3 (a store it cannot use), and nothing is created."""
    from typer.testing import CliRunner

    from cli.main import app

    with pg_schemas() as (url, prefix):
        owner = PostgresBackend(url, schema_prefix=prefix)
        owner.upgrade()  # creates the worker role; the support data is not installed
        owner.upgrade()  # and again: nothing to do, no error
        owner.close()
        monkeypatch.setenv("SIGNOFF_HOME", str(tmp_path))
        monkeypatch.setenv("SIGNOFF_DATABASE_URL", as_role(url, DEFAULT_WORKER_ROLE))
        monkeypatch.setenv("SIGNOFF_DB_SCHEMA_PREFIX", prefix)
        result = CliRunner().invoke(app, ["run", "TKT-1001"])
        assert result.exit_code == 3, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "cannot install the support data" in lines[0]
        assert "as the owner role" in lines[0]
        import psycopg

        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regnamespace(%s)", (f"{prefix}support",)
                                ).fetchone() == (None,)
