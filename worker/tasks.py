"""The queue's tasks: small functions that call the runner.

A task gets its runners from the worker that runs it (`WorkerEnv`, passed to Procrastinate as
additional context): a pool with one Runner per job in flight, since a Runner's connections
serve one drive at a time and sync tasks run in threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from procrastinate import JobContext
from procrastinate import exceptions as pq_errors
from procrastinate.jobs import Status

from graph.runner import Runner
from worker.queue import DRIVE_TASK, enqueue_run_async

if TYPE_CHECKING:
    from worker.app import QueueSettings

ENV_KEY = "signoff"
"""Where a job's context carries the worker's WorkerEnv."""
log = logging.getLogger("signoff.worker")


class RunnerPool:
    """Runners for the jobs a worker runs at once, built on demand and reused."""

    def __init__(self, factory: Callable[[], Runner]) -> None:
        self._factory = factory
        self._idle: list[Runner] = []
        self._all: list[Runner] = []
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[Runner]:
        """A runner no other job uses until this one gives it back."""
        with self._lock:
            runner = self._idle.pop() if self._idle else None
        if runner is None:
            runner = self._factory()
            with self._lock:
                self._all.append(runner)
        try:
            yield runner
        finally:
            with self._lock:
                self._idle.append(runner)

    def close(self) -> None:
        with self._lock:
            runners, self._all, self._idle = self._all, [], []
        for runner in runners:
            runner.close()


@dataclass
class WorkerEnv:
    """What a worker's tasks share: its settings and its runners."""

    settings: QueueSettings
    runners: RunnerPool
    counts: dict[str, int] = field(default_factory=dict)
    """Outcomes of the runs this worker drove, by status (for its log)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, status: str) -> None:
        with self._lock:  # jobs end in several threads at once
            self.counts[status] = self.counts.get(status, 0) + 1


def env_of(context: JobContext) -> WorkerEnv:
    env = context.additional_context.get(ENV_KEY)
    assert isinstance(env, WorkerEnv), "run the queue's tasks with worker.run.run_worker"
    return env


def drive_run(context: JobContext, run_id: str) -> str:
    """Drive a queued run until it ends, waits for a human, or stands queued again. RunBusy
    (the lease is held) makes Procrastinate retry the job later."""
    env = env_of(context)
    with env.runners.borrow() as runner:
        result = runner.drive_queued(run_id)
        status = runner.status(run_id).status if result is None else result.status
    if result is None:
        log.info("run %s: nothing to drive (%s)", run_id, status)
        return f"nothing to drive: {status}"
    env.note(result.status)
    log.info("run %s: %s (%d mutation(s))", run_id, result.status, result.mutations)
    return result.status


async def sweep(context: JobContext, timestamp: int) -> dict[str, int]:
    """Put back work whose driver died: retry the jobs of workers that stopped beating, then
    enqueue runs left queued or running with no live lease (a lost job, a crashed CLI)."""
    env, manager = env_of(context), context.app.job_manager
    retried = superseded = 0
    for job in await manager.get_stalled_jobs(
            task_name=DRIVE_TASK, seconds_since_heartbeat=env.settings.stalled_after_s):
        try:
            await manager.retry_job(job)
            retried += 1
        except pq_errors.UniqueViolation:
            # Another job for the same run already waits: this one is not needed.
            assert job.id is not None
            await manager.finish_job_by_id_async(job.id, Status.FAILED, delete_job=False)
            superseded += 1

    def lapsed() -> list[str]:
        with env.runners.borrow() as runner:
            return runner.lapsed_runs(older_than_s=env.settings.lapsed_after_s)

    enqueued = 0
    for run_id in await asyncio.to_thread(lapsed):
        enqueued += await enqueue_run_async(context.app, run_id)
    if retried or superseded or enqueued:
        log.info("sweep: %d stalled job(s) retried, %d superseded, %d lapsed run(s) enqueued",
                 retried, superseded, enqueued)
    return {"retried": retried, "superseded": superseded, "enqueued": enqueued}


def purge(context: JobContext, timestamp: int) -> dict[str, Any]:
    """Prune the checkpoints of runs that finished longer ago than the retention."""
    env = env_of(context)
    assert env.settings.retention_s is not None
    with env.runners.borrow() as runner:
        result = runner.prune(env.settings.retention_s)
    log.info("purge: %d finished run(s) pruned", len(result.run_ids))
    return {"runs": len(result.run_ids), "checkpoints": result.checkpoints}
