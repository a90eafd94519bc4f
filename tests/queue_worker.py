"""A queue worker for tests: `python -m tests.queue_worker HOME URL [--kill-at LABEL]
[--busy-retry S]`, the worker `signoff worker` runs, with test settings and, with --kill-at,
a fault hook that SIGKILLs the process at that kill point (checkpoints.faults)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

from checkpoints.faults import CrashFaults
from graph.observe import recorder_factory
from graph.runner import Home, Runner
from worker.app import QueueSettings
from worker.run import run_worker

TEST_SETTINGS = {"sweep_every_s": 1, "stalled_after_s": 2.0, "lapsed_after_s": 60.0,
                 "poll_s": 0.5}


class KillAt(CrashFaults):
    """SIGKILL the process the first time the kill point `label` is hit."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.target = label

    def hit(self, label: str) -> None:
        if label == self.target:
            os.kill(os.getpid(), signal.SIGKILL)
        super().hit(label)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("home")
    parser.add_argument("url")
    parser.add_argument("--kill-at")
    parser.add_argument("--busy-retry", type=int, default=5)
    args = parser.parse_args()
    settings = QueueSettings(url=args.url, busy_retry_s=args.busy_retry, **TEST_SETTINGS)

    def runner() -> Runner:
        return Runner(Home(Path(args.home)), recorder_factory=recorder_factory(),
                      faults=KillAt(args.kill_at) if args.kill_at else None)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    env = run_worker(settings, runner)
    print("runs driven:", sorted(env.counts.items()), flush=True)


if __name__ == "__main__":
    main()
