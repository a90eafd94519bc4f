"""Helpers every workflow's tools share: new row ids, a UTC clock, fail-closed scope checks."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from tools.base import ScopeFn, ToolContext

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def next_id(conn: sqlite3.Connection, table: str, column: str, prefix: str) -> str:
    """The next id after the largest one with `prefix` (e.g. RF-00013): deterministic given the
    database content. Ids are primary keys across tenants, so this is the one read not filtered
    by tenant; it returns only a number. table/column/prefix are the caller's constants."""
    row = conn.execute(
        f"SELECT MAX(CAST(substr({column}, ?) AS INTEGER)) FROM {table} WHERE {column} LIKE ?",
        (len(prefix) + 1, prefix + "%"),
    ).fetchone()
    return f"{prefix}{(row[0] or 0) + 1:05d}"


def arg(args: Any, name: str) -> Any:
    """An argument by name; the gate may pass the validated model or the raw dict."""
    if isinstance(args, Mapping):
        return args[name]
    return getattr(args, name)


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
