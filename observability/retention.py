"""Retention: purge traces older than N days, keeping the audit chain verifiable."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from observability.audit import AuditLog
from observability.reader import open_traces

_EVENT_TABLES = ("model_calls", "tool_calls", "decisions", "evidence")


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
    home: Path,
    older_than_days: float,
    *,
    audit: bool = True,
    clock: Callable[[], float] = time.time,
) -> PurgeResult:
    """Delete runs started more than `older_than_days` ago, and (by default) old audit entries."""
    if older_than_days < 0:
        raise ValueError("older_than_days must be >= 0")
    cutoff = clock() - older_than_days * 86_400
    with open_traces(home) as conn:
        # Deleted pages are zeroed, so purged text does not linger in free pages.
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            old = "SELECT run_id FROM runs WHERE started_at < ?"
            events = sum(
                conn.execute(
                    f"DELETE FROM {table} WHERE run_id IN ({old})"
                    " OR (at < ? AND run_id NOT IN (SELECT run_id FROM runs))",
                    (cutoff, cutoff),
                ).rowcount
                for table in _EVENT_TABLES
            )
            runs = conn.execute("DELETE FROM runs WHERE started_at < ?", (cutoff,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    audit_deleted = 0
    if audit:
        log = AuditLog(home, clock=clock, create=False)
        try:
            audit_deleted = log.purge_before(cutoff)
        finally:
            log.close()
    return PurgeResult(runs, events, audit_deleted, cutoff)
