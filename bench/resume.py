"""Section 3: resume latency, from a human's approval to the run's next checkpoint.

Each sample: start TKT-1002 (a $120 refund the policy holds for a support lead), then time
`Runner.decide(approve)`. "To next checkpoint" is the timestamp LangGraph stamps on the first
checkpoint written after the call began, minus the call's start; "to run end" is the whole
decide call (approve, execute the refund, postcheck, plan, note, finish). The support
database is rebuilt before every sample, outside the timing, so every refund fits.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import REQUESTER, approver_for, percentile
from checkpoints.saver import open_checkpointer, thread_config
from graph.observe import recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow


def run(work: Path, *, samples: int) -> dict[str, Any]:
    workflow = get_workflow("support")
    ticket = next(t for t in workflow.sample_tickets() if t.ticket_id == "TKT-1002")
    runner = Runner(Home(work), recorder_factory=recorder_factory())
    to_checkpoint, to_end, statuses = [], [], set()
    try:
        for i in range(samples + 1):
            runner.ensure_domain_db(workflow, reset=True)
            held = runner.start("support", ticket, requester=REQUESTER)
            if held.status != "waiting_approval":
                raise RuntimeError(f"TKT-1002 did not wait for approval: {held.status}")
            wall0, t0 = time.time(), time.perf_counter()
            done = runner.decide(held.run_id, {"action": "approve",
                                               "by": approver_for(ticket.tenant_id),
                                               "reason": "benchmark approval"})
            elapsed = time.perf_counter() - t0
            statuses.add(done.status)
            with open_checkpointer(runner.home.checkpoints_db) as saver:
                stamps = [datetime.fromisoformat(c.checkpoint["ts"]).timestamp()
                          for c in saver.list(thread_config(held.run_id))]  # type: ignore[arg-type]
            after = [s for s in stamps if s >= wall0]
            if i == 0 or not after:  # the first sample warms caches
                continue
            to_checkpoint.append(min(after) - wall0)
            to_end.append(elapsed)
    finally:
        runner.close()
    return {"samples": len(to_checkpoint), "statuses": sorted(statuses),
            "checkpoint_p50_s": percentile(to_checkpoint, 50),
            "checkpoint_p95_s": percentile(to_checkpoint, 95),
            "end_p50_s": percentile(to_end, 50), "end_p95_s": percentile(to_end, 95)}
