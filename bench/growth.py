"""Section 2: checkpoint and trace bytes per ticket, and their growth with run length."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from bench.common import REQUESTER, checkpoint_bytes, supersteps
from bench.longrun import big_budget_policy, reads_workflow
from graph.observe import recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow

TRACE_TABLES = ("runs", "model_calls", "tool_calls", "decisions", "evidence")


def trace_bytes(home: Path, run_id: str) -> tuple[int, int]:
    """(trace-row bytes, audit-row bytes) one run wrote: the sum of its rows' column lengths.

    The FTS5 index and SQLite page overhead are not included (see the file sizes instead).
    """
    total = 0
    with sqlite3.connect(home / "traces.db") as conn:
        for table in TRACE_TABLES:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            expr = " + ".join(f"COALESCE(LENGTH({c}), 0)" for c in cols)
            total += conn.execute(f"SELECT COALESCE(SUM({expr}), 0) FROM {table}"
                                  " WHERE run_id = ?", (run_id,)).fetchone()[0]
    with sqlite3.connect(home / "audit.db") as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(audit)")]
        expr = " + ".join(f"COALESCE(LENGTH({c}), 0)" for c in cols)
        audit = conn.execute(f"SELECT COALESCE(SUM({expr}), 0) FROM audit WHERE run_id = ?",
                             (run_id,)).fetchone()[0]
    return int(total), int(audit)


def per_ticket(home: Path, threads: dict[str, str]) -> list[dict[str, Any]]:
    """Bytes stored for each sample ticket's signoff run (from section 1's last round)."""
    rows = []
    for ticket_id, run_id in threads.items():
        traces, audit = trace_bytes(home, run_id)
        rows.append({"ticket": ticket_id, "checkpoint_bytes":
                     checkpoint_bytes(home / "checkpoints.db", run_id),
                     "trace_bytes": traces, "audit_bytes": audit})
    return rows


def run(work: Path, *, lengths: tuple[int, ...]) -> list[dict[str, Any]]:
    policy = big_budget_policy(work / "policy.toml")
    ticket = next(t for t in get_workflow("support").sample_tickets()
                  if t.ticket_id == "TKT-1005")
    rows = []
    for reads in lengths:
        home = work / f"reads-{reads}"
        workflow = reads_workflow(reads)
        runner = Runner(Home(home), recorder_factory=recorder_factory(),
                        policy_override=policy)
        try:
            runner.ensure_domain_db(workflow, reset=True)
            result = runner.start(workflow.name, ticket, requester=REQUESTER)
        finally:
            runner.close()
        if result.status != "resolved":
            raise RuntimeError(f"{reads}-read run ended {result.status}: {result.reason}")
        traces, audit = trace_bytes(home, result.run_id)
        ckpt = checkpoint_bytes(home / "checkpoints.db", result.run_id)
        rows.append({"reads": reads,
                     "supersteps": supersteps(home / "checkpoints.db", result.run_id),
                     "checkpoint_bytes": ckpt, "trace_bytes": traces, "audit_bytes": audit,
                     "checkpoint_per_read": ckpt / reads, "trace_per_read": traces / reads,
                     "audit_per_read": audit / reads})
    return rows
