"""The checkpointer factory: LangGraph's SqliteSaver in one file, durability "sync".

"sync" persists each step before the next one starts, so a process killed at any point
resumes from the last finished step ("exit" would lose the whole run on a hard kill).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.sqlite import SqliteSaver

from graph.errors import DamagedData

DURABILITY: Literal["sync"] = "sync"


class IntegerVersions:
    """Channel versions as integers (BaseCheckpointSaver's default) instead of the savers'
    32-digit string with a random fraction: smaller rows, and the same version format on
    both backends, so a thread migrated from SQLite goes on under PostgreSQL (LangGraph takes
    the max of a thread's versions; an int and a str never compare)."""

    def get_next_version(self, current: str | int | None, channel: None) -> Any:
        if isinstance(current, str):
            return super().get_next_version(current, channel)  # type: ignore[misc]
        return 1 if current is None else current + 1


class CompactSqliteSaver(IntegerVersions, SqliteSaver):
    """SqliteSaver whose channel versions are integers (BaseCheckpointSaver's default).

    SqliteSaver names each version with a 32-digit counter and a random fraction, about 50
    bytes, and every checkpoint stores a version per channel and per node seen: over a
    kilobyte of each of signoff's checkpoint rows, about a third of them. A thread begun
    under the string format keeps it: LangGraph derives each step's next version from the
    highest current one, so a thread never mixes the two.
    """


@contextmanager
def open_checkpointer(
    path: str | Path, *,
    saver_factory: Callable[[sqlite3.Connection], SqliteSaver] = CompactSqliteSaver,
) -> Iterator[SqliteSaver]:
    """A set-up SqliteSaver on `path`, closed on exit. Raises DamagedData for a bad file.

    `saver_factory` builds the saver on the connection; crash tests pass one whose saves are
    kill points (checkpoints.faults.CrashFaults.saver_factory).
    """
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        saver = saver_factory(conn)
        saver.setup()
    except sqlite3.DatabaseError as exc:
        raise DamagedData(f"{path} is not a usable checkpoint database: {exc}") from None
    try:
        yield saver
    finally:
        conn.close()


def thread_config(run_id: str) -> dict[str, dict[str, str]]:
    """The LangGraph config for a run: its thread id is the run id."""
    return {"configurable": {"thread_id": run_id}}
