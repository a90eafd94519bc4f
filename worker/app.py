"""The Procrastinate app: one factory, the tasks and their periodic schedules declared on it."""

from __future__ import annotations

from dataclasses import dataclass

import procrastinate

from graph.errors import RunBusy, SignoffError
from worker import tasks
from worker.queue import DRIVE_TASK, PURGE_TASK, SWEEP_TASK

PURGE_CRON = "7 * * * *"
"""The retention purge runs hourly, at 7 past (off the hour that other jobs crowd)."""


@dataclass(frozen=True)
class QueueSettings:
    """Where the queue is and how its workers pace themselves."""

    url: str
    """postgresql://... of the queue's database; `options=-csearch_path=...` picks a schema."""
    sweep_every_s: int = 30
    """Seconds between sweeps: stalled jobs retried, runs with no live driver enqueued again."""
    stalled_after_s: float = 30.0
    """A worker silent (no heartbeat) this long is taken for dead, and its jobs retried."""
    lapsed_after_s: float = 60.0
    """A queued or running run unchanged this long with no live lease is enqueued again (its
    job was lost, or its driver died): long enough for a fresh job to have been taken."""
    busy_retry_s: int = 5
    """A job that finds its run's lease held waits this long before it tries again."""
    poll_s: float = 2.0
    """Most seconds between polls for due jobs (new ones also arrive by LISTEN/NOTIFY)."""
    retention_s: float | None = None
    """Prune the checkpoints of runs finished longer ago than this, hourly; None: never."""

    def __post_init__(self) -> None:
        if not (1 <= self.sweep_every_s <= 59 or (self.sweep_every_s % 60 == 0
                                                   and self.sweep_every_s <= 59 * 60)):
            raise SignoffError("the sweep period is 1-59 seconds or whole minutes up to 59m, "
                               f"not {self.sweep_every_s}s")


def every(seconds: int) -> str:
    """Cron for "every `seconds`" (Procrastinate takes seconds as a sixth column)."""
    if seconds < 60:
        return f"* * * * * */{seconds}"
    return f"*/{seconds // 60} * * * *"


def create_app(settings: QueueSettings) -> procrastinate.App:
    """The queue's app over `settings.url`, with signoff's tasks and their schedules."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=settings.url))
    # A run whose lease another process holds is not a failure: try again until it is free
    # (a dead holder's lease lapses, a live one finishes).
    app.task(name=DRIVE_TASK, pass_context=True,
             retry=procrastinate.RetryStrategy(retry_exceptions={RunBusy},
                                               wait=settings.busy_retry_s))(tasks.drive_run)
    sweep = app.task(name=SWEEP_TASK, pass_context=True, queueing_lock=SWEEP_TASK)(tasks.sweep)
    app.periodic(cron=every(settings.sweep_every_s), periodic_id="sweep")(sweep)
    if settings.retention_s is not None:
        purge = app.task(name=PURGE_TASK, pass_context=True,
                         queueing_lock=PURGE_TASK)(tasks.purge)
        app.periodic(cron=PURGE_CRON, periodic_id="purge")(purge)
    return app
