"""Connections for the trace store and the audit log, through the storage seam
(checkpoints.backend), and the errors they raise.

Every public function of the package takes a `StoreSource`: a Home (graph.runner.Home, whose
`open_backend()` names SQLite or PostgreSQL), a Backend already open, or a Path, which is a
SQLite data directory (tests and benchmarks). What the two databases do differently when a
store is opened, written or closed is here, in `_DIALECTS`; each store's DDL is in its Schema.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from checkpoints.backend import Backend, SqliteBackend
from checkpoints.sql import Connection
from graph.errors import StoreUnavailable

TRACES = "traces"
AUDIT = "audit"
TRACES_FILE = f"{TRACES}.db"
AUDIT_FILE = f"{AUDIT}.db"


class StoreError(Exception):
    """A trace or audit database is missing or unreadable; the message is one line."""


class HasBackend(Protocol):
    """What the package needs of a Home: the backend its stores live on."""

    def open_backend(self) -> Backend: ...


StoreSource = HasBackend | Backend | Path | str
"""A Home, an open Backend, or a SQLite data directory."""


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, non-JSON values as strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@contextmanager
def backend_of(source: StoreSource) -> Iterator[Backend]:
    """The backend `source` names, closed on exit when this opened it."""
    if isinstance(source, str | os.PathLike):
        yield SqliteBackend(Path(source))
        return
    if hasattr(source, "open_backend"):
        backend = source.open_backend()
        try:
            yield backend
        finally:
            backend.close()
        return
    yield source  # type: ignore[misc]  # a Backend: its owner closes it


def database_errors() -> tuple[type[Exception], ...]:
    """What a failing SQLite or PostgreSQL database raises (psycopg's only when installed)."""
    try:
        import psycopg
    except ImportError:  # SQLite only: psycopg is the postgres extra
        return (sqlite3.DatabaseError,)
    return (sqlite3.DatabaseError, psycopg.Error)


@contextmanager
def store_errors(prefix: str | None = None) -> Iterator[None]:
    """Turn a database error inside the block into a one-line StoreError: the database's own
    first line, after `prefix` (e.g. "cannot read /data/traces.db") when given."""
    try:
        yield
    except StoreError:
        raise
    except database_errors() as exc:
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else type(exc).__name__
        raise StoreError(f"{prefix}: {first}" if prefix else first) from exc


@dataclass(frozen=True)
class _Dialect:
    """What opening, writing and closing a store means on one database."""

    on_open: Sequence[str]
    """Statements run once on a new connection."""
    begin: Callable[[Any], None]
    """Open a write transaction that holds the store's write lock."""
    close: Callable[[Any], None]


def _sqlite_close(conn: Any) -> None:
    # Fold the WAL into the main file, so the file alone holds the data.
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


_DIALECTS = {
    # IMMEDIATE takes SQLite's one write lock before anything is read. NORMAL in WAL mode
    # survives an application crash; it skips the fsync per commit.
    "sqlite": _Dialect(on_open=("PRAGMA synchronous=NORMAL",),
                       begin=lambda conn: conn.execute("BEGIN IMMEDIATE"),
                       close=_sqlite_close),
    "postgres": _Dialect(on_open=(), begin=lambda conn: conn.begin(),
                         close=lambda conn: conn.close()),
}


@dataclass
class Store:
    """One open connection to the trace store or the audit log, and its dialect."""

    conn: Any
    """sqlite3.Connection or checkpoints.sql.PgConnection (rows readable by name)."""
    dialect: str
    """"sqlite" or "postgres"."""
    where: str
    """The file or the database, for messages (no secrets)."""

    def begin(self) -> None:
        _DIALECTS[self.dialect].begin(self.conn)

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A write transaction: committed on exit, rolled back on an exception."""
        self.begin()
        try:
            yield self.conn
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def close(self) -> None:
        _DIALECTS[self.dialect].close(self.conn)


def open_store(backend: Backend, store: str, *, create: bool) -> Store:
    """A connection to `store` (TRACES or AUDIT) on `backend`, its schema current.

    With `create=False` a SQLite file that is not there raises StoreError rather than
    being created (reading never makes a store); on PostgreSQL the schema is made by
    `signoff db upgrade`, and a schema not upgraded raises StoreUnavailable.
    """
    where = backend.describe()
    if isinstance(backend, SqliteBackend):
        path = backend.path(store)
        where = str(path)
        if not create and not path.is_file():
            raise StoreError(f"no database at {path}")
        try:
            conn: Connection = backend.connect(store)
        except StoreUnavailable as exc:
            raise StoreError(f"cannot read {path}: {str(exc).rsplit(': ', 1)[-1]}") from None
    else:
        conn = backend.connect(store)
    with store_errors(f"cannot read {where}"):
        for statement in _DIALECTS[backend.dialect].on_open:
            conn.execute(statement)
    return Store(conn, backend.dialect, where)
