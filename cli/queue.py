"""`signoff queue upgrade` and `signoff worker`, and the queue the environment names.

    SIGNOFF_QUEUE_URL=postgresql://... signoff queue upgrade
    SIGNOFF_QUEUE_URL=postgresql://... signoff worker --concurrency 2

The queue is SIGNOFF_QUEUE_URL, else SIGNOFF_DATABASE_URL when that is a postgresql URL
(SIGNOFF_QUEUE_URL=off: none).
With one configured, `signoff run --queue` and the decision commands enqueue work for the
workers instead of driving the run in this process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import typer

from cli.errors import BadUsage
from cli.main import GuardedTyper, app, build_runner, home, out
from graph.errors import SignoffError

if TYPE_CHECKING:  # Procrastinate and psycopg load when a queue command runs
    from graph.runner import Runner

POSTGRES_SCHEMES = ("postgresql://", "postgres://")

queue_app = GuardedTyper(no_args_is_help=True,
                         help="The Postgres job queue the workers take runs from.")
app.add_typer(queue_app, name="queue")


NO_QUEUE = "off"
"""SIGNOFF_QUEUE_URL=off: no queue, even when SIGNOFF_DATABASE_URL names PostgreSQL (the
stores there, runs driven by the command that starts or decides them)."""


def queue_url(env: Mapping[str, str] | None = None) -> str | None:
    """The queue's URL: SIGNOFF_QUEUE_URL, else SIGNOFF_DATABASE_URL when it is a postgresql
    URL; None when neither names one, or SIGNOFF_QUEUE_URL is `off`."""
    env = os.environ if env is None else env
    url = env.get("SIGNOFF_QUEUE_URL") or ""
    if url == NO_QUEUE:
        return None
    if url:
        if not url.startswith(POSTGRES_SCHEMES):
            raise SignoffError("SIGNOFF_QUEUE_URL must be a postgresql://... URL (the queue "
                               "lives in PostgreSQL), or off")
        return url
    database = env.get("SIGNOFF_DATABASE_URL") or ""
    return database if database.startswith(POSTGRES_SCHEMES) else None


def require_queue_url(what: str) -> str:
    """The queue's URL, or a one-line error saying how to configure one for `what` (or that
    the queue's packages are not installed)."""
    url = queue_url()
    if url is None:
        raise SignoffError(f"{what} needs a queue: set SIGNOFF_QUEUE_URL=postgresql://... "
                           "(or SIGNOFF_DATABASE_URL to a postgresql URL)")
    try:
        import procrastinate  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        raise SignoffError("the queue needs Procrastinate and psycopg, which are not "
                           "installed: pip install 'signoff[postgres]'") from None
    return url


def ready_queue(what: str) -> str:
    """The configured queue's URL, once it is reachable and has its schema (checked before
    anything is recorded, so a queue that is down changes nothing)."""
    from worker.queue import require_schema

    url = require_queue_url(what)
    require_schema(url)
    return url


def enqueue(url: str, run_id: str) -> None:
    """Put a job driving `run_id` on the queue at `url` (none is added while one waits)."""
    from procrastinate.exceptions import ConnectorException

    from checkpoints.backend import redact_url
    from worker.app import QueueSettings, create_app
    from worker.queue import enqueue_run

    queue = create_app(QueueSettings(url=url))
    try:
        with queue.open():
            enqueue_run(queue, run_id)
    except ConnectorException as exc:
        raise SignoffError(f"run {run_id} is recorded but could not be enqueued at "
                           f"{redact_url(url)} ({exc.__cause__ or exc}); a worker's sweep "
                           "enqueues it once the queue works") from None


def print_queued(run_id: str) -> None:
    out.print(f"  a worker drives it (`signoff worker`); `signoff status {run_id}` shows "
              "where it is")


@queue_app.command("upgrade")
def upgrade() -> None:
    """Create or upgrade the queue's schema (Procrastinate's); safe to run again.

    Example: SIGNOFF_QUEUE_URL=postgresql://signoff@db/signoff signoff queue upgrade
    """
    from worker.queue import upgrade_schema

    out.print(upgrade_schema(require_queue_url("`signoff queue upgrade`")))


def _seconds(text: str, option: str) -> float:
    from checkpoints.prune import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise BadUsage(f"{option}: {exc}") from None


@app.command()
def worker(concurrency: int = typer.Option(1, "--concurrency", min=1, max=64,
                                           help="Jobs this worker runs at once."),
           name: str = typer.Option(None, "--name", help="The worker's name in the logs."),
           sweep_every: str = typer.Option("30s", "--sweep-every",
                                           help="How often to retry stalled jobs and enqueue "
                                                "runs whose driver died."),
           stalled_after: str = typer.Option("30s", "--stalled-after",
                                             help="A worker with no heartbeat this long is "
                                                  "taken for dead."),
           lapsed_after: str = typer.Option("60s", "--lapsed-after",
                                            help="A queued or running run idle this long with "
                                                 "no live lease is enqueued again."),
           lease_ttl: str = typer.Option("120s", "--lease-ttl",
                                         help="How long a run's lease lasts unrenewed (a "
                                              "dead worker on another host holds it so long)."),
           retention: str = typer.Option(None, "--retention",
                                         help="Hourly, prune the checkpoints of runs finished "
                                              "longer ago than this (e.g. 30d); off if unset."),
           ) -> None:
    """Take runs from the queue and drive them, until SIGTERM (jobs in flight finish first).

    Example: SIGNOFF_QUEUE_URL=postgresql://signoff@db/signoff signoff worker --concurrency 2
    """
    from worker.app import QueueSettings
    from worker.run import run_worker

    sweep_s = _seconds(sweep_every, "--sweep-every")
    settings = QueueSettings(
        url=require_queue_url("`signoff worker`"), sweep_every_s=max(1, int(sweep_s)),
        stalled_after_s=_seconds(stalled_after, "--stalled-after"),
        lapsed_after_s=_seconds(lapsed_after, "--lapsed-after"),
        retention_s=_seconds(retention, "--retention") if retention else None)
    data, ttl = home(), _seconds(lease_ttl, "--lease-ttl")

    def runner() -> Runner:
        made = build_runner(data)
        made.lease_ttl = ttl
        return made

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = run_worker(settings, runner, concurrency=concurrency, name=name)
    done = ", ".join(f"{status} {n}" for status, n in sorted(env.counts.items())) or "none"
    out.print(f"worker stopped; runs driven: {done}")
