"""Helpers every workflow's domain shares: opening and installing its database, new row ids,
a UTC clock, fail-closed scope checks."""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checkpoints.sql import dialect_of, transaction_of
from tools.base import ScopeFn, ToolContext

Clock = Callable[[], datetime]

ID_COUNTERS = "signoff_ids"
"""On PostgreSQL, the last number handed out per id prefix, across tenants: row-level security
hides other tenants' rows from `next_id`'s MAX, and ids are primary keys across tenants. It
holds numbers only, no tenant data (checkpoints.domain creates and fills it)."""
WRITE_LOCK = "SELECT pg_advisory_xact_lock(hashtext('signoff_domain:' || current_schema()))"
"""On PostgreSQL, what BEGIN IMMEDIATE is on SQLite: one writer at a time per domain store,
held until the transaction ends."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def next_id(conn: Any, table: str, column: str, prefix: str) -> str:
    """The next id after the largest one with `prefix` (e.g. RF-00013): deterministic given the
    database content. Ids are primary keys across tenants, so this is the one read not filtered
    by tenant; it returns only a number. table/column/prefix are the caller's constants."""
    return f"{prefix}{next_number(conn, table, column, prefix):05d}"


def next_number(conn: Any, table: str, column: str, prefix: str, *, at_least: int = 1) -> int:
    """The number after the largest id `prefix<number>` in `table.column`, and at least
    `at_least`; call it inside the write transaction that inserts the row. On PostgreSQL the
    tenant's own rows are all it may read, so the counter in ID_COUNTERS (numbers only) keeps
    the largest number handed out in any tenant."""
    row = conn.execute(
        f"SELECT MAX(CAST(substr({column}, ?) AS INTEGER)) FROM {table} WHERE {column} LIKE ?",
        (len(prefix) + 1, prefix + "%"),
    ).fetchone()
    number = max(int(row[0] or 0) + 1, at_least)
    if dialect_of(conn) == "postgres":
        number = int(conn.execute(
            f"INSERT INTO {ID_COUNTERS} (table_name, column_name, prefix, last)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (table_name, column_name, prefix) DO UPDATE"
            f" SET last = GREATEST({ID_COUNTERS}.last + 1, excluded.last) RETURNING last",
            (table, column, prefix, number)).fetchone()[0])
    return number


def arg(args: Any, name: str) -> Any:
    """An argument by name; the gate may pass the validated model or the raw dict."""
    if isinstance(args, Mapping):
        return args[name]
    return getattr(args, name)


def begin_write(conn: Any) -> None:
    """Open a transaction that holds the domain's write lock from its first statement: BEGIN
    IMMEDIATE on SQLite; on PostgreSQL a transaction (a tenant-bound connection sets the run's
    tenant first, checkpoints.domain) whose first statement takes WRITE_LOCK. Reads after it
    see every writer that committed before (READ COMMITTED takes a snapshot per statement)."""
    if conn.in_transaction:
        conn.rollback()  # never build on a transaction someone else left open
    if dialect_of(conn) == "postgres":
        conn.begin()
        conn.execute(WRITE_LOCK)
    else:
        conn.execute("BEGIN IMMEDIATE")


def write_transaction(conn: Any) -> AbstractContextManager[Any]:
    """A transaction that holds the write lock from its first statement (begin_write), so
    a read-then-insert such as "next ticket id" cannot interleave with another process doing
    the same: the second waits (the connection's busy timeout, or the lock) and reads the
    first's row. Commits on success, rolls back on any exception."""
    return transaction_of(conn, begin=begin_write)


RUN_FIELDS = {"tenant_id": "tenant", "customer_id": "customer", "ticket_id": "ticket"}
"""The run's scope fields a scope check may need, with the word a reason uses for each."""


def run_scope_missing(ctx: ToolContext, *fields: str) -> str | None:
    """A blocking reason when the run lacks one of `fields` ("tenant_id", "customer_id",
    "ticket_id"), else None. A scope check calls it first: a run that does not know whose data
    it works on may touch nobody's, so "unknown" never reads as "anyone"."""
    for name in fields:
        if name not in RUN_FIELDS:
            raise ValueError(f"unknown run scope field {name!r}")
        value = getattr(ctx, name)
        if value is None or not str(value).strip():
            return f"the run has no {RUN_FIELDS[name]}: refused (scope cannot be checked)"
    return None


def fail_closed(check: Callable[[ToolContext, Any], str | None]) -> ScopeFn:
    """Wrap a scope check so that any exception becomes a blocking reason."""

    @functools.wraps(check)
    def safe(ctx: ToolContext, args: Any) -> str | None:
        try:
            return check(ctx, args)
        except Exception as exc:  # fail closed on anything, by design
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return f"scope check failed: {detail}"

    return safe


def scope_check(*fields: str) -> Callable[[Callable[[ToolContext, Any], str | None]], ScopeFn]:
    """Make a scope check of `check`: refused when the run lacks one of `fields`
    (run_scope_missing), and failing closed on any exception (fail_closed)."""

    def wrap(check: Callable[[ToolContext, Any], str | None]) -> ScopeFn:
        @functools.wraps(check)
        def guarded(ctx: ToolContext, args: Any) -> str | None:
            return run_scope_missing(ctx, *fields) or check(ctx, args)

        return fail_closed(guarded)

    return wrap


def install_built_db(building: Path, target: Path) -> None:
    """Move a database built aside into place, in WAL mode: set while nobody else can have the
    file open, so processes opening it later never race to convert it. The replaced file's
    -wal/-shm are removed so they can never be read as the new file's log."""
    conn = sqlite3.connect(building)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    for stale in ("-wal", "-shm"):
        target.with_name(target.name + stale).unlink(missing_ok=True)
    os.replace(building, target)


def open_domain_db(path: str | Path, *, kind: str, tables: Iterable[str]) -> sqlite3.Connection:
    """Open an existing domain database for tools: foreign keys on, rows as sqlite3.Row, WAL.

    Raises FileNotFoundError when there is no such file and ValueError (one line) when the
    file is not a `kind` database (unreadable, or missing one of `tables`). The caller owns
    transactions; tools never commit.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{kind} database not found: {source}")
    # mode=rw: never create a file here, even if it vanished since the check above.
    conn = sqlite3.connect(source.resolve().as_uri() + "?mode=rw", uri=True,
                           check_same_thread=False)
    try:
        found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ValueError(f"{source} is not a signoff {kind} database ({exc})") from None
    missing = sorted(set(tables) - found)
    if missing:
        conn.close()
        raise ValueError(f"{source} is not a signoff {kind} database "
                         f"(missing tables: {', '.join(missing)})")
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    # WAL: a mutation's commit (effect + ledger row) appends to the log instead of rewriting
    # pages through a rollback journal; as durable (synchronous stays FULL), several times
    # cheaper per commit. Files are built in WAL; this converts one built before that.
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    return conn
