"""Pruning: delete the checkpoints of finished runs and give the disk space back.

SqliteSaver keeps every step's state and has no prune of its own, only `delete_thread`. A run
that ended (resolved, escalated, blocked, rejected, failed) is never driven again, so its
checkpoints only cost space; what happened stays in the run registry, the traces and the audit
log, which pruning does not touch. Runs that wait for a human or are still running (or crashed
and await `signoff resume`) keep their checkpoints whatever their age, and so does a finished
run whose lease is still held.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from checkpoints.backend import Backend
from checkpoints.control_schema import STORE
from checkpoints.runs import TERMINAL
from graph.errors import DamagedData

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d{1,9})([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as 7d, 12h, 30m, 45s or 2w; ValueError (one line) otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"a duration looks like 7d, 12h, 30m, 45s or 2w, not {text!r}")
    return float(int(match.group(1)) * UNITS[match.group(2)])


@dataclass(frozen=True)
class PruneResult:
    """What a prune deleted (or, on a dry run, would delete)."""

    run_ids: tuple[str, ...]
    """Finished runs whose checkpoints were deleted."""
    checkpoints: int
    writes: int
    bytes_before: int
    """Size of the checkpoints before the prune (checkpoints.db and its WAL, or the
    PostgreSQL tables)."""
    bytes_after: int
    dry_run: bool


def _file_bytes(backend: Backend) -> int:
    path = Path(backend.where("checkpoints"))
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _table_bytes(backend: Backend) -> int:
    conn = backend.connect("checkpoints")
    try:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()
    finally:
        conn.close()
    return int(row[0])


@dataclass(frozen=True)
class _Dialect:
    """What pruning does differently on each backend."""

    writes_table: str
    """The saver's table of task writes (SqliteSaver: writes; PostgresSaver:
    checkpoint_writes, beside checkpoint_blobs, which delete_thread also empties)."""
    reclaim: tuple[str, ...]
    """Statements that give the space back after the deletes."""
    disk_bytes: Callable[[Backend], int]
    """The checkpoints' size: checkpoints.db and its WAL, or the Postgres tables."""


DIALECTS = {
    "sqlite": _Dialect("writes", ("VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"), _file_bytes),
    # Plain VACUUM makes the space reusable by new checkpoints without VACUUM FULL's exclusive
    # lock (which would stop every run while it rewrites the tables); the files themselves
    # shrink only when their tail is free.
    "postgres": _Dialect("checkpoint_writes", ("VACUUM checkpoints", "VACUUM checkpoint_writes",
                                               "VACUUM checkpoint_blobs"), _table_bytes),
}


def finished_runs(backend: Backend, cutoff: float, now: float) -> list[str]:
    """Ids of runs that ended before `cutoff` and that no process holds. Raises DamagedData
    when the backend holds no run registry."""
    conn = backend.open_existing(STORE)
    if conn is None:
        raise DamagedData(f"no run registry in {backend.describe()} (is SIGNOFF_HOME, or "
                          "SIGNOFF_DATABASE_URL, right?)")
    try:
        marks = ",".join("?" * len(TERMINAL))
        rows = conn.execute(
            f"SELECT run_id FROM runs WHERE status IN ({marks}) AND updated_at < ?"
            " AND (lease_owner IS NULL OR lease_expires < ?) ORDER BY updated_at, run_id",
            (*sorted(TERMINAL), cutoff, now)).fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows]


def prune_finished(backend: Backend, older_than_s: float, *, now: float | None = None,
                   dry_run: bool = False) -> PruneResult:
    """Delete the checkpoints of runs that finished more than `older_than_s` seconds ago,
    then reclaim the space (VACUUM). Raises DamagedData when there is no run registry."""
    now = time.time() if now is None else now
    candidates = finished_runs(backend, now - older_than_s, now)
    dialect = DIALECTS[backend.dialect]
    before = dialect.disk_bytes(backend)
    if not candidates:
        return PruneResult((), 0, 0, before, before, dry_run)
    pruned, checkpoints, writes = [], 0, 0
    with backend.checkpointer() as saver:
        conn = backend.connect("checkpoints")
        try:
            for run_id in candidates:
                n_checkpoints = conn.execute(
                    "SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?", (run_id,)
                ).fetchone()[0]
                n_writes = conn.execute(
                    f"SELECT COUNT(*) FROM {dialect.writes_table} WHERE thread_id = ?",
                    (run_id,)).fetchone()[0]
                if not n_checkpoints and not n_writes:
                    continue  # pruned before
                pruned.append(run_id)
                checkpoints += n_checkpoints
                writes += n_writes
                if not dry_run:
                    saver.delete_thread(run_id)
            if pruned and not dry_run:
                _commit_saver(saver)
                for statement in dialect.reclaim:
                    conn.execute(statement)
        finally:
            conn.close()
    return PruneResult(tuple(pruned), checkpoints, writes, before,
                       dialect.disk_bytes(backend), dry_run)


def _commit_saver(saver: object) -> None:
    """SqliteSaver's deletes may sit in an open transaction on its connection: VACUUM on
    another connection would not see them freed (PostgresSaver autocommits)."""
    conn = getattr(saver, "conn", None)
    if isinstance(conn, sqlite3.Connection) and conn.in_transaction:
        conn.commit()
