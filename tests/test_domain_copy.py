"""Copying SQLite tables into PostgreSQL (checkpoints/copy.py): how a Postgres home gets a
workflow's sample data, and what `signoff migrate` reuses."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checkpoints.backend import PostgresBackend
from checkpoints.copy import copy_sqlite_tables, postgres_type, table_names
from checkpoints.domain import install_domain
from tests.pg import pg_schemas
from tools.access.seed import build_access_db
from tools.support.seed import build_support_db


@pytest.mark.parametrize(("declared", "postgres"), [
    ("INTEGER", "BIGINT"), ("int", "BIGINT"), ("TEXT", "TEXT"), ("VARCHAR(40)", "TEXT"),
    ("", "TEXT"), ("BLOB", "BYTEA"), ("REAL", "DOUBLE PRECISION"), ("FLOAT", "DOUBLE PRECISION"),
    ("NUMERIC", "NUMERIC"), ("DATE", "NUMERIC")])
def test_sqlite_types_map_by_affinity(declared: str, postgres: str) -> None:
    assert postgres_type(declared) == postgres


@pytest.fixture
def pg() -> Iterator[tuple[Any, PostgresBackend]]:
    """(a psycopg connection to a fresh schema, the backend it belongs to)."""
    import psycopg

    with pg_schemas() as (url, prefix):
        schema = f"{prefix}copy"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
            conn.execute(f'SET search_path TO "{schema}"')
            backend = PostgresBackend(url, schema_prefix=prefix)
            try:
                yield conn, backend
            finally:
                backend.close()


def dump_sqlite(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall()
                for t in table_names(conn)}
    finally:
        conn.close()


@pytest.mark.parametrize("build", [build_support_db, build_access_db], ids=["support", "access"])
def test_every_row_arrives_with_its_constraints(pg: tuple[Any, PostgresBackend],
                                                tmp_path: Path, build: Any) -> None:
    import psycopg

    conn, _ = pg
    path = tmp_path / "domain.db"
    build(path)
    source = sqlite3.connect(path)
    copied = copy_sqlite_tables(source, conn)
    source.close()
    want = dump_sqlite(path)
    assert copied == {t: len(rows) for t, rows in want.items()}
    for table, rows in want.items():
        assert [tuple(r) for r in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1')] == rows
    if build is build_access_db:
        # The partial unique index: one live grant per employee, system and level.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO grants (grant_id, tenant_id, employee_id, system_id, level,"
                         " granted_at) VALUES ('GR-99999', 'corp', 'EMP-0001', 'wiki-internal',"
                         " 'admin', 'now')")
        return
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO refunds VALUES ('RF-99999', 'acme', 'ORD-99999', 100, 'x',"
                     " 'requested', '2026-10-01T00:00:00Z', NULL)")
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ('t', 'T')")
    with pytest.raises(psycopg.errors.UniqueViolation):  # customers' (tenant, email) index
        conn.execute("INSERT INTO customers SELECT 'CUS-9999', tenant_id, name, email, phone,"
                     " flagged FROM customers WHERE customer_id = 'CUS-0001'")
    # SQLite's INTEGER PRIMARY KEY hands out the next rowid; the copy does the same.
    last = conn.execute("SELECT MAX(item_id) FROM order_items").fetchone()[0]
    new = conn.execute("INSERT INTO order_items (tenant_id, order_id, sku, name, qty,"
                       " unit_price_cents) VALUES ('acme', 'ORD-10001', 'X', 'x', 1, 1)"
                       " RETURNING item_id").fetchone()[0]
    assert new == last + 1


def test_a_row_postgres_refuses_leaves_nothing_behind(pg: tuple[Any, PostgresBackend],
                                                      tmp_path: Path) -> None:
    import psycopg

    conn, _ = pg
    source = sqlite3.connect(tmp_path / "odd.db")
    source.execute("CREATE TABLE a (id TEXT PRIMARY KEY, n INTEGER)")
    source.execute("CREATE TABLE b (id TEXT PRIMARY KEY, n INTEGER)")
    source.execute("INSERT INTO a VALUES ('x', 1)")
    source.execute("INSERT INTO b VALUES ('y', 'not a number')")  # SQLite keeps it as text
    source.commit()
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        copy_sqlite_tables(source, conn)
    assert conn.execute("SELECT to_regclass('a'), to_regclass('b')").fetchone() == (None, None)


def test_rows_into_tables_that_exist(pg: tuple[Any, PostgresBackend], tmp_path: Path) -> None:
    conn, _ = pg
    conn.execute("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL,"
                 " CHECK (length(body) > 0))")
    source = sqlite3.connect(tmp_path / "notes.db")
    source.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    source.executemany("INSERT INTO notes VALUES (?, ?)", [(1, "one"), (2, "two")])
    source.commit()
    assert copy_sqlite_tables(source, conn, ["notes"], create=False) == {"notes": 2}
    assert conn.execute("SELECT body FROM notes ORDER BY id").fetchall() == [("one",), ("two",)]


def test_a_default_postgres_cannot_take_is_a_one_line_error(pg: tuple[Any, PostgresBackend],
                                                            tmp_path: Path) -> None:
    conn, _ = pg
    source = sqlite3.connect(tmp_path / "d.db")
    source.execute("CREATE TABLE t (id TEXT PRIMARY KEY, at TEXT DEFAULT (datetime('now')))")
    with pytest.raises(ValueError, match=r"^t\.at has a default PostgreSQL cannot take"):
        copy_sqlite_tables(source, conn)


def test_a_domain_table_without_a_tenant_column_is_refused(pg: tuple[Any, PostgresBackend],
                                                           tmp_path: Path) -> None:
    _, backend = pg
    path = tmp_path / "shared.db"
    source = sqlite3.connect(path)
    source.execute("CREATE TABLE catalog (sku TEXT PRIMARY KEY, name TEXT)")
    source.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, tenant_id TEXT)")
    source.commit()
    source.close()
    with pytest.raises(ValueError, match="tables catalog have no tenant_id column"):
        install_domain(backend, "shop", path)
