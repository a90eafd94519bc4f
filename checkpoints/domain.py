"""A workflow's domain data on PostgreSQL: installing it, and tenant isolation by the database.

On SQLite a workflow's domain database is its file (support.db); on PostgreSQL it is the store
named after the workflow, the schema `<prefix><workflow>`, which also holds the idempotency
ledger, so a mutation and its ledger key still commit in one transaction.

Installing (`install_domain`, run by the owner role: what `signoff demo` and a reset do) copies
the tables of the SQLite file the workflow's `build_db` wrote into that schema
(checkpoints.copy), adds the ledger's tables and the id counters, and puts every table under
row-level security: a policy lets a transaction see and write only rows whose tenant_id is
`app.tenant`, and FORCE applies it to the tables' owner too. A table without a tenant_id column
is refused: on PostgreSQL every domain table says whose data it is.

`for_tenant(conn, tenant)` is how a run reaches the data: every transaction on it first does
`SET LOCAL app.tenant` to the run's tenant (from the run record, never from model output), so a
query that forgot its tenant filter still sees only that tenant's rows. With no tenant set,
nothing is visible. The role workers connect as (WORKER_ROLE, NOSUPERUSER NOBYPASSRLS, not the
owner) cannot switch that off; superusers and BYPASSRLS roles can, which is why workers never
connect as one.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from checkpoints.copy import copy_sqlite_tables, table_names
from checkpoints.sql import PgConnection, transaction_of
from graph.errors import StoreUnavailable
from tools.common import ID_COUNTERS
from tools.ledger import LEDGER_DIALECTS, LEDGER_INDEX, LEDGER_TABLES

TENANT_SETTING = "app.tenant"
TENANT_COLUMN = "tenant_id"
WORKER_ROLE_ENV = "SIGNOFF_DB_WORKER_ROLE"
DEFAULT_WORKER_ROLE = "signoff_worker"
POLICY = "tenant_isolation"

_ID_COUNTERS_DDL = (f"CREATE TABLE {ID_COUNTERS} (table_name TEXT NOT NULL, column_name TEXT"
                    " NOT NULL, prefix TEXT NOT NULL, last BIGINT NOT NULL,"
                    " PRIMARY KEY (table_name, column_name, prefix))")


def worker_role() -> str:
    """The role workers connect as (SIGNOFF_DB_WORKER_ROLE, default signoff_worker)."""
    role = os.environ.get(WORKER_ROLE_ENV, "") or DEFAULT_WORKER_ROLE
    if not role.replace("_", "a").isalnum() or not role.isascii():
        raise StoreUnavailable(f"{WORKER_ROLE_ENV} must be letters, digits and _, not {role!r}")
    return role.lower()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# The worker role --------------------------------------------------------------------------


def ensure_worker_role(raw: Any, role: str) -> None:
    """Create the workers' role if it is missing: it may log in (set its password with ALTER
    ROLE), and it is no superuser, cannot bypass row-level security, create roles or
    databases. Needs CREATEROLE when the role does not exist yet."""
    if raw.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        return
    import psycopg

    try:
        raw.execute(f"CREATE ROLE {_ident(role)} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB"
                    " NOCREATEROLE")
    except psycopg.errors.DuplicateObject:
        pass  # another upgrade made it a moment ago
    except psycopg.errors.UniqueViolation:
        pass
    except psycopg.errors.InsufficientPrivilege:
        raise StoreUnavailable(
            f"the worker role {role} does not exist and this role may not create it: create "
            f"it (CREATE ROLE {role} LOGIN NOBYPASSRLS) or run `signoff db upgrade` as a role "
            "with CREATEROLE") from None


def grant_worker(raw: Any, schemas: Sequence[str], role: str) -> None:
    """Let `role` use the stores in `schemas`: read and write rows (never DDL), sequences."""
    for schema in schemas:
        name = _ident(schema)
        raw.execute(f"GRANT USAGE ON SCHEMA {name} TO {_ident(role)}")
        raw.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {name} TO "
                    f"{_ident(role)}")
        raw.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {name} TO "
                    f"{_ident(role)}")


def grant_worker_everywhere(raw: Any, schema_prefix: str) -> str:
    """Create the worker role if needed and grant it every store under `schema_prefix`
    (what `signoff db upgrade` does last); the role's name."""
    role = worker_role()
    ensure_worker_role(raw, role)
    schemas = [r[0] if isinstance(r, tuple) else r["nspname"] for r in raw.execute(
        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
        (schema_prefix.lower(),)).fetchall()]
    grant_worker(raw, schemas, role)
    return role


# Installing a domain --------------------------------------------------------------------


def install_domain(backend: Any, store: str, built: Path) -> dict[str, int]:
    """Replace `store`'s schema content with the tables of the SQLite file `built`, the ledger
    and the id counters, all under row-level security, in one transaction; the rows copied per
    table. Run as the owner role (it creates tables); raises StoreUnavailable (one line) when
    that role may not, and ValueError for a table without a tenant_id column."""
    source = sqlite3.connect(f"file:{built}?mode=ro", uri=True)
    try:
        with backend.pool.connection() as raw:
            try:
                # Outside the transaction: a role another installer made a moment ago is an
                # error that would abort it.
                ensure_worker_role(raw, worker_role())
                with raw.transaction():
                    return install_tables(raw, backend.schema(store), store, source)
            finally:
                raw.execute("RESET search_path")
    finally:
        source.close()


def install_tables(raw: Any, schema: str, store: str, source: sqlite3.Connection
                   ) -> dict[str, int]:
    """What `install_domain` does, on the psycopg connection `raw` inside the caller's
    transaction (`signoff migrate` copies every store in one): the domain tables of `source`
    created from SQLite's definitions, the ledger from its Postgres DDL with the rows `source`
    holds in it (an installed home's mutations), the id counters, row-level security, the
    worker's grants (the role exists: `install_domain` or `signoff db upgrade` made it).
    Leaves search_path on `schema`."""
    import psycopg

    tables = [t for t in table_names(source) if t not in (*LEDGER_TABLES, ID_COUNTERS)]
    missing = [t for t in tables
               if TENANT_COLUMN not in {r[1] for r in source.execute(
                   f"PRAGMA table_info({_ident(t)})")}]
    if missing:
        raise ValueError(f"the {store} tables {', '.join(missing)} have no {TENANT_COLUMN}"
                         " column: on PostgreSQL every domain table needs one, for "
                         "row-level security (docs/extending.md)")
    role = worker_role()
    try:
        raw.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        raw.execute(f"SET search_path TO {_ident(schema)}")
        for table in LEDGER_TABLES:
            raw.execute(f"DROP TABLE IF EXISTS {_ident(table)}")
        raw.execute(f"DROP TABLE IF EXISTS {ID_COUNTERS}")
        copied = copy_sqlite_tables(source, raw, tables)
        conn = PgConnection(raw)
        for ddl in LEDGER_DIALECTS["postgres"].tables.values():
            conn.execute(ddl)
        conn.execute(LEDGER_INDEX)
        held = [t for t in LEDGER_TABLES if t in table_names(source)]
        copied.update(copy_sqlite_tables(source, raw, held, create=False))
        _fill_id_counters(raw, source, tables)
        for table in [*tables, *LEDGER_TABLES]:
            _isolate(raw, table)
        grant_worker(raw, [schema], role)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreUnavailable(
            f"cannot install the {store} data in {schema}: {_first(exc)} (install "
            "it as the owner role, the one that runs `signoff db upgrade`)") from None
    return copied


def _fill_id_counters(raw: Any, source: sqlite3.Connection, tables: Sequence[str]) -> None:
    """Start each text primary key's counters (per prefix: RF-, TKT-, ...) at the largest
    number any tenant holds, read now, before row-level security is on."""
    raw.execute(_ID_COUNTERS_DDL)
    for table in tables:
        keys = [r for r in source.execute(f"PRAGMA table_info({_ident(table)})") if r[5]]
        if len(keys) != 1 or "INT" in (keys[0][2] or "").upper():
            continue
        column = _ident(keys[0][1])
        raw.execute(
            f"INSERT INTO {ID_COUNTERS} (table_name, column_name, prefix, last)"
            f" SELECT %s, %s, regexp_replace({column}, '[0-9]+$', ''),"
            f" MAX(substring({column} from '[0-9]{{1,18}}$')::bigint) FROM {_ident(table)}"
            f" WHERE {column} ~ '[0-9]$' GROUP BY 3", (table, keys[0][1]))


def _isolate(raw: Any, table: str) -> None:
    """Row-level security on `table`: rows of the transaction's tenant only, for reads and
    writes, for every role that is not a superuser or BYPASSRLS (FORCE: the owner included)."""
    name = _ident(table)
    raw.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
    raw.execute(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY")
    raw.execute(f"DROP POLICY IF EXISTS {POLICY} ON {name}")
    check = f"{TENANT_COLUMN} = current_setting('{TENANT_SETTING}', true)"
    raw.execute(f"CREATE POLICY {POLICY} ON {name} USING ({check}) WITH CHECK ({check})")


def is_installed(conn: Any) -> bool:
    """Whether the connection's domain schema holds an installed domain (its ledger)."""
    return conn.execute("SELECT to_regclass('mutation_ledger') IS NOT NULL").fetchone()[0] is True


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# A run's connection ---------------------------------------------------------------------


class TenantConnection:
    """A domain connection bound to one run's tenant: every transaction on it first sets
    `app.tenant` (SET LOCAL: it ends with the transaction), and a statement outside a
    transaction runs in one of its own that does the same. It shares the underlying
    connection (and its transaction) with every other binding of it; closing it does not
    close that."""

    dialect = "postgres"

    def __init__(self, conn: PgConnection, tenant_id: str) -> None:
        self.inner = conn
        self.tenant_id = tenant_id

    @property
    def raw(self) -> Any:
        return self.inner.raw

    @property
    def in_transaction(self) -> bool:
        return self.inner.in_transaction

    def _bind(self) -> None:
        self.inner.execute(f"SELECT set_config('{TENANT_SETTING}', ?, true)", (self.tenant_id,))

    def begin(self) -> None:
        if not self.inner.in_transaction:
            self.inner.begin()
            self._bind()

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        if self.inner.in_transaction:
            return self.inner.execute(sql, parameters)
        with self.transaction():
            return self.inner.execute(sql, parameters)

    def commit(self) -> None:
        self.inner.commit()

    def rollback(self) -> None:
        self.inner.rollback()

    def transaction(self) -> AbstractContextManager[TenantConnection]:
        return transaction_of(self)

    def close(self) -> None:
        pass  # the runner owns the connection


def for_tenant(conn: Any, tenant_id: str) -> Any:
    """`conn` bound to `tenant_id` for a run: a TenantConnection on PostgreSQL; on SQLite the
    connection itself (SQLite has no row-level security: there the tools' tenant filters are
    the isolation, which is why a deployment that must isolate tenants runs on PostgreSQL)."""
    if isinstance(conn, TenantConnection):
        conn = conn.inner
    if isinstance(conn, PgConnection):
        return TenantConnection(conn, tenant_id)
    return conn
