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
from dataclasses import dataclass
from pathlib import Path

from checkpoints.runs import TERMINAL
from checkpoints.saver import open_checkpointer
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
    """Size of checkpoints.db and its WAL before the prune."""
    bytes_after: int
    dry_run: bool


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def finished_runs(runs_db: Path, cutoff: float, now: float) -> list[str]:
    """Ids of runs that ended before `cutoff` and that no process holds."""
    conn = sqlite3.connect(runs_db, timeout=10)
    try:
        marks = ",".join("?" * len(TERMINAL))
        rows = conn.execute(
            f"SELECT run_id FROM runs WHERE status IN ({marks}) AND updated_at < ?"
            " AND (lease_owner IS NULL OR lease_expires < ?) ORDER BY updated_at, run_id",
            (*sorted(TERMINAL), cutoff, now)).fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows]


def prune_finished(root: Path, older_than_s: float, *, now: float | None = None,
                   dry_run: bool = False) -> PruneResult:
    """Delete the checkpoints of runs under `root` that finished more than `older_than_s`
    seconds ago, then VACUUM so the file shrinks. Raises DamagedData when `root` holds no
    run registry."""
    runs_db, checkpoints_db = root / "control.db", root / "checkpoints.db"
    if not runs_db.is_file():
        raise DamagedData(f"no run registry in {root} (is SIGNOFF_HOME right?)")
    now = time.time() if now is None else now
    candidates = finished_runs(runs_db, now - older_than_s, now)
    before = _disk_bytes(checkpoints_db)
    if not checkpoints_db.is_file() or not candidates:
        return PruneResult((), 0, 0, before, before, dry_run)
    pruned, checkpoints, writes = [], 0, 0
    with open_checkpointer(checkpoints_db) as saver:
        conn = saver.conn
        for run_id in candidates:
            n_checkpoints = conn.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?",
                                         (run_id,)).fetchone()[0]
            n_writes = conn.execute("SELECT COUNT(*) FROM writes WHERE thread_id = ?",
                                    (run_id,)).fetchone()[0]
            if not n_checkpoints and not n_writes:
                continue  # pruned before
            pruned.append(run_id)
            checkpoints += n_checkpoints
            writes += n_writes
            if not dry_run:
                saver.delete_thread(run_id)
        if pruned and not dry_run:
            if conn.in_transaction:
                conn.commit()
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return PruneResult(tuple(pruned), checkpoints, writes, before,
                       _disk_bytes(checkpoints_db), dry_run)
