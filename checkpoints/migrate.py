"""`signoff migrate --to postgresql://...`: copy a SQLite data directory to PostgreSQL.

Checkpoints go saver to saver through LangGraph's own interface (every checkpoint of every
thread, oldest first, with its parent link, its metadata and its pending writes), so a run
waiting for an approval under SQLite resumes under PostgreSQL at the same checkpoint.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple


@dataclass(frozen=True)
class CheckpointCopy:
    """What `copy_checkpoints` copied."""

    threads: int
    checkpoints: int
    writes: int


def copy_checkpoints(source: BaseCheckpointSaver[Any], target: BaseCheckpointSaver[Any]
                     ) -> CheckpointCopy:
    """Copy every checkpoint and pending write in `source` into `target`; threads already in
    `target` are skipped (a second copy is a no-op, never a fork)."""
    by_thread: dict[tuple[str, str], list[CheckpointTuple]] = defaultdict(list)
    for tup in source.list(None):
        conf = tup.config["configurable"]
        by_thread[(conf["thread_id"], conf.get("checkpoint_ns", ""))].append(tup)
    threads = checkpoints = writes = 0
    for (thread_id, ns), tuples in sorted(by_thread.items()):
        if target.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}):
            continue
        threads += 1
        # Checkpoint ids are time-ordered (uuid6): oldest first, so each parent exists first.
        for tup in sorted(tuples, key=lambda t: t.config["configurable"]["checkpoint_id"]):
            parent = tup.parent_config or {
                "configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
            checkpoint = tup.checkpoint
            saved = target.put(parent, checkpoint, tup.metadata,
                               dict(checkpoint.get("channel_versions", {})))
            checkpoints += 1
            grouped: dict[str, list[tuple[str, Any]]] = defaultdict(list)
            for task_id, channel, value in tup.pending_writes or ():
                grouped[task_id].append((channel, value))
            for task_id, task_writes in grouped.items():
                target.put_writes(saved, task_writes, task_id)
                writes += len(task_writes)
    return CheckpointCopy(threads=threads, checkpoints=checkpoints, writes=writes)
