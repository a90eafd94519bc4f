"""Crash injection: hooks that SIGKILL the process at a chosen point, and a checkpointer that
exposes its writes as such points.

A `CrashFaults` object is passed as `Runner(faults=...)`. The execute node calls its
`before_commit` (inside the ledger transaction, after the effect is written) and `after_commit`
(after COMMIT returned), and, for an effect in an external API, `external_point` at each of
EXTERNAL_POINTS; the runner builds its checkpointer with `saver_factory`, so every
checkpoint (`put`) and every task's writes (`put_writes`) are points too, before and after the
write. Each hit is counted; at hit number `kill_at` the process sends itself SIGKILL, a real
hard kill: no `finally`, no atexit, no flush.

Production code never builds one of these; `Runner.faults` is None there.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
)

from checkpoints.saver import CompactSqliteSaver

RESUME_CHANNEL = "__resume__"
"""LangGraph's channel for a `Command(resume=...)` value: once it is written, a human decision
survives a crash."""

RESUME_MARK = "+decision"
"""Appended to the label of writes that carry a human decision."""

POINT_KINDS = ("before_commit", "after_commit", "before_checkpoint", "after_checkpoint",
               "before_writes", "after_writes", "before_call", "after_api_commit",
               "after_response")
EXTERNAL_POINTS = ("before_call", "after_api_commit", "after_response")
"""Inside an external effect (tools.ledger.commit_external): just before the HTTP call, once
the API has answered (it committed) but before the answer is read, and after the answer is
read but before the ledger's confirming transaction."""


class _Hooks:
    """Reports each checkpoint and task-writes save of the saver it is mixed into, before and
    after the write: the same kill points on every backend."""

    _hook: Callable[[str], None]

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        where = f"step={metadata.get('step')}"
        self._hook(f"before_checkpoint:{where}")
        saved: RunnableConfig = super().put(  # type: ignore[misc]
            config, checkpoint, metadata, new_versions)
        self._hook(f"after_checkpoint:{where}")
        return saved

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        what = task_path.rsplit(",", 1)[-1].strip() or "input"
        if any(channel == RESUME_CHANNEL for channel, _ in writes):
            what += RESUME_MARK
        self._hook(f"before_writes:{what}")
        super().put_writes(config, writes, task_id, task_path)  # type: ignore[misc]
        self._hook(f"after_writes:{what}")


class HookedSaver(_Hooks, CompactSqliteSaver):
    """The runner's SQLite saver with its saves as kill points."""

    def __init__(self, conn: sqlite3.Connection, *, hook: Callable[[str], None]) -> None:
        super().__init__(conn)
        self._hook = hook


def hooked_postgres_saver(conn: Any, *, hook: Callable[[str], None]) -> BaseCheckpointSaver[Any]:
    """The runner's PostgreSQL saver (checkpoints.backend.compact_postgres_saver, on `conn`,
    a psycopg connection) with its saves as kill points; PostgreSQL loads only when used."""
    from checkpoints.backend import compact_postgres_saver

    class HookedPostgresSaver(_Hooks, compact_postgres_saver()):  # type: ignore[misc]
        def __init__(self, conn: Any) -> None:
            super().__init__(conn)
            self._hook = hook

    return HookedPostgresSaver(conn)


class CrashFaults:
    """Counts kill points as they are hit; at hit number `kill_at` (1-based) it SIGKILLs the
    process after writing the point's label and whether a human decision had been saved to
    `report_fd`. With `kill_at=None` it only records the labels (to enumerate the points)."""

    def __init__(self, kill_at: int | None = None, report_fd: int | None = None) -> None:
        self.kill_at = kill_at
        self.report_fd = report_fd
        self.labels: list[str] = []
        self.decision_saved = False
        """True once a `Command(resume=...)` write has reached the checkpoint database."""
        self._lock = threading.Lock()  # LangGraph saves writes from its worker threads

    def hit(self, label: str) -> None:
        with self._lock:
            self.labels.append(label)
            if self.kill_at is not None and len(self.labels) == self.kill_at:
                if self.report_fd is not None:
                    os.write(self.report_fd,
                             f"{label}\t{int(self.decision_saved)}\n".encode())
                os.kill(os.getpid(), signal.SIGKILL)
            if label.startswith("after_writes:") and label.endswith(RESUME_MARK):
                self.decision_saved = True

    def before_commit(self, run_id: str, step: int, tool: str) -> None:
        self.hit(f"before_commit:{tool}")

    def after_commit(self, run_id: str, step: int, tool: str) -> None:
        self.hit(f"after_commit:{tool}")

    def external_point(self, run_id: str, step: int, tool: str, where: str) -> None:
        self.hit(f"{where}:{tool}")

    def saver_factory(self, conn: Any) -> BaseCheckpointSaver[Any]:
        """The saver the backend builds on `conn`: sqlite3 for SQLite, psycopg for Postgres."""
        if isinstance(conn, sqlite3.Connection):
            return HookedSaver(conn, hook=self.hit)
        return hooked_postgres_saver(conn, hook=self.hit)


def point_kind(label: str) -> str:
    """`before_commit:create_refund_request` -> `before_commit`."""
    return label.split(":", 1)[0]
