"""Section 4: tickets per second with 1 and 2 worker processes sharing one SIGNOFF_HOME.

Each worker is a separate process with its own Runner on the shared SQLite files (control,
checkpoints, traces, audit, support). Workers take the sample tickets round-robin; a ticket
counts when its run ends or waits for a human. Time runs from the moment all workers are
ready to the last one finishing.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

from bench.common import REQUESTER


def _worker(home: str, indexes: list[int], ready: Any, go: Any, out: Any) -> None:
    from graph.observe import recorder_factory
    from graph.runner import Home, Runner
    from graph.workflows import get_workflow

    tickets = get_workflow("support").sample_tickets()
    runner = Runner(Home(Path(home)), recorder_factory=recorder_factory())
    statuses: dict[str, int] = {}
    ready.release()
    go.wait()
    started = time.time()
    try:
        for i in indexes:
            status = runner.start("support", tickets[i % len(tickets)],
                                  requester=REQUESTER).status
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        runner.close()
    out.put((started, time.time(), statuses))


def run(work: Path, *, tickets: int, workers: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    from graph.runner import Home, Runner
    from graph.workflows import get_workflow

    ctx = mp.get_context("spawn")
    rows = []
    for count in workers:
        home = work / f"workers-{count}"
        setup = Runner(Home(home))
        setup.ensure_domain_db(get_workflow("support"), reset=True)
        setup.close()
        ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_worker,
                             args=(str(home), list(range(w, tickets, count)), ready, go, out))
                 for w in range(count)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.acquire()
        t0 = time.time()
        go.set()
        results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        end = max(r[1] for r in results)
        statuses: dict[str, int] = {}
        for r in results:
            for k, v in r[2].items():
                statuses[k] = statuses.get(k, 0) + v
        if sum(statuses.values()) != tickets:
            raise RuntimeError(f"{count} workers finished {statuses}, not {tickets} tickets")
        rows.append({"workers": count, "tickets": tickets, "seconds": end - t0,
                     "tickets_per_s": tickets / (end - t0), "statuses": statuses})
    return rows
