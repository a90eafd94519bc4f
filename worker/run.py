"""Starting a worker: the app, its runners, and Procrastinate's worker loop."""

from __future__ import annotations

import logging
from collections.abc import Callable

from graph.runner import Runner
from worker.app import QueueSettings, create_app
from worker.queue import require_schema
from worker.tasks import ENV_KEY, RunnerPool, WorkerEnv


def run_worker(settings: QueueSettings, runner_factory: Callable[[], Runner], *,
               concurrency: int = 1, name: str | None = None) -> WorkerEnv:
    """Take jobs from the queue until SIGTERM or SIGINT; then finish the jobs in flight and
    return. Each job in flight has its own Runner from `runner_factory`."""
    require_schema(settings.url)
    app = create_app(settings)
    env = WorkerEnv(settings=settings, runners=RunnerPool(runner_factory))
    logging.getLogger("signoff.worker").info(
        "worker %s: concurrency %d, sweep every %ds", name or "worker", concurrency,
        settings.sweep_every_s)
    try:
        app.run_worker(concurrency=concurrency, name=name, additional_context={ENV_KEY: env},
                       fetch_job_polling_interval=settings.poll_s,
                       update_heartbeat_interval=max(0.5, settings.stalled_after_s / 3),
                       stalled_worker_timeout=settings.stalled_after_s,
                       install_signal_handlers=True)
    finally:
        env.runners.close()
    return env
