"""One connection face over SQLite and PostgreSQL, for stores whose SQL is the same on both.

signoff's stores are written in the SQL the two databases share: `?` placeholders, rows read by
column name or position, `INSERT ... ON CONFLICT`. `PgConnection` gives a psycopg 3 connection
that face (it rewrites `?` to psycopg's `%s` and returns rows that behave like sqlite3.Row), so
a store keeps one body of SQL; what differs (DDL, locking) lives in each store's dialect table.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What a store needs of a connection: sqlite3.Connection and PgConnection both are one."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...

    @property
    def in_transaction(self) -> bool: ...


class Row(tuple[Any, ...]):
    """A result row readable by position and by column name, and `dict(row)`-able."""

    _names: tuple[str, ...]

    def __new__(cls, names: tuple[str, ...], values: Sequence[Any]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise IndexError(f"no such column: {key}") from None
        return tuple.__getitem__(self, key)


def _row_factory(cursor: Any) -> Any:
    names = tuple(column.name for column in cursor.description or ())
    return lambda values: Row(names, values)


@functools.lru_cache(maxsize=1024)
def to_psycopg(sql: str) -> str:
    """`sql` with each `?` outside a quoted string or identifier made `%s`, and `%` doubled."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote:
            out.append("%%" if char == "%" else char)
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


class PgConnection:
    """A psycopg 3 connection (autocommit outside explicit transactions) with the sqlite3 face.

    `execute` outside a transaction autocommits, as the stores' SQLite connections do
    (isolation_level=None); `begin()` opens a transaction that `commit()` or `rollback()` ends.
    """

    def __init__(self, conn: Any, *, release: Any = None) -> None:
        self.raw = conn
        """The psycopg connection, for code that speaks Postgres (the dialects, COPY)."""
        self._release = release
        self._tx: Any = None

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        cursor = self.raw.cursor(row_factory=_row_factory)
        cursor.execute(to_psycopg(sql), tuple(parameters) if parameters else None)
        return cursor

    def begin(self) -> None:
        """Open a transaction; statements until commit() or rollback() are in it."""
        if self._tx is None:
            self._tx = self.raw.transaction()
            self._tx.__enter__()

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    def commit(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            tx.__exit__(None, None, None)

    def rollback(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            from psycopg import Rollback

            try:
                tx.__exit__(Rollback, Rollback(), None)
            except Rollback:  # pragma: no cover - psycopg swallows its own Rollback
                pass

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """Statements inside commit together, or not at all on an exception."""
        self.begin()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def close(self) -> None:
        if self._tx is not None:
            self.rollback()
        if self._release is not None:
            release, self._release = self._release, None
            release(self.raw)
        else:
            self.raw.close()
