"""Retention: purge traces older than N days, keeping the audit chain verifiable."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from observability.audit import AuditLog
from observability.db import StoreSource, backend_of, store_errors
from observability.reader import open_traces

_EVENT_TABLES = ("model_calls", "tool_calls", "decisions", "evidence")
_BEFORE_DELETE = {
    # Deleted pages are zeroed, so purged text does not linger in free pages.
    "sqlite": ("PRAGMA secure_delete = ON",),
    # PostgreSQL leaves dead tuples until VACUUM reclaims them (autovacuum; docs/operations).
    "postgres": (),
}


@dataclass(frozen=True)
class PurgeResult:
    runs_deleted: int
    """Runs that started before the cutoff."""
    events_deleted: int
    """Their model calls, tool calls, decisions and evidence rows."""
    audit_entries_deleted: int
    """Audit entries before the cutoff; an anchor keeps the rest verifiable."""
    cutoff: float
    """The epoch-seconds boundary: older than this was purged."""


def purge(
    source: StoreSource,
    older_than_days: float,
    *,
    audit: bool = True,
    clock: Callable[[], float] = time.time,
) -> PurgeResult:
    """Delete runs started more than `older_than_days` ago, and (by default) old audit entries,
    in the stores of `source` (a Home, a Backend or a SQLite data directory)."""
    if older_than_days < 0:
        raise ValueError("older_than_days must be >= 0")
    cutoff = clock() - older_than_days * 86_400
    with backend_of(source) as backend:
        with open_traces(backend) as store:
            for statement in _BEFORE_DELETE[store.dialect]:
                store.conn.execute(statement)
            with store.write() as conn:
                old = "SELECT run_id FROM runs WHERE started_at < ?"
                events = sum(
                    conn.execute(
                        f"DELETE FROM {table} WHERE run_id IN ({old})"
                        " OR (at < ? AND run_id NOT IN (SELECT run_id FROM runs))",
                        (cutoff, cutoff),
                    ).rowcount
                    for table in _EVENT_TABLES
                )
                runs = conn.execute("DELETE FROM runs WHERE started_at < ?",
                                    (cutoff,)).rowcount
        audit_deleted = 0
        if audit:
            log = AuditLog(backend, clock=clock, create=False)
            try:
                with store_errors(f"cannot purge {log.where}"):
                    audit_deleted = log.purge_before(cutoff)
            finally:
                log.close()
    return PurgeResult(runs, events, audit_deleted, cutoff)
