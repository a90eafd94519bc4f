"""Section 6: where signoff's time goes on the sample tickets (cProfile of the real Runner).

Runs every sample ticket (approving the held one) `rounds` times under cProfile and reports
the functions with the most cumulative time that belong to signoff's hot path, plus the
biggest own-time entries (the leaves: SQLite calls, lock waits, schema generation).
"""

from __future__ import annotations

import cProfile
import pstats
import time
from pathlib import Path
from typing import Any

from bench.variants import SignoffVariant
from graph.workflows import get_workflow

INTERESTING = ("runner.py", "nodes/", "recorder.py", "audit.py", "saver.py", "runs.py",
               "state.py:", "base.py", "ledger.py", "gate.py", "policy.py", "argument_check",
               "compile", "openai_schema", "model_json_schema", "bind_tools", "stream")


def _label(func: tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":
        return name
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{short}:{line}({name})"


def run(work: Path, *, rounds: int, top: int = 18) -> dict[str, Any]:
    variant = SignoffVariant(work)
    tickets = get_workflow("support").sample_tickets()
    try:
        variant.reset()
        for ticket in tickets:  # warm up outside the profile
            variant.run(ticket)
        profiler = cProfile.Profile()
        runs, started = 0, time.perf_counter()
        for _ in range(rounds):
            variant.reset()
            profiler.enable()
            for ticket in tickets:
                variant.run(ticket)
                runs += 1
            profiler.disable()
        wall = time.perf_counter() - started
    finally:
        variant.close()
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())  # own time over everything
    rows = [(func, v[1], v[2], v[3]) for func, v in entries.items()]
    cumulative = sorted((r for r in rows if any(k in _label(r[0]) for k in INTERESTING)),
                        key=lambda r: r[3], reverse=True)[:top]
    own = sorted(rows, key=lambda r: r[2], reverse=True)[:top]
    return {"runs": runs, "wall_s": wall, "profiled_s": total,
            "cumulative": [{"function": _label(f), "calls": n, "cum_ms_per_run":
                            cum * 1000 / runs} for f, n, _, cum in cumulative],
            "own": [{"function": _label(f), "calls": n, "own_ms_per_run": own_t * 1000 / runs}
                    for f, n, own_t, _ in own]}


def fix_costs(work: Path, *, repeats: int = 30) -> list[dict[str, Any]]:
    """Side by side, the per-run cost of what the runner did before each fix and after it."""
    import statistics

    from checkpoints.runs import RunStore
    from checkpoints.saver import open_checkpointer
    from graph.factory import build_graph
    from graph.runner import Home, Runner
    from verifiers.policy import load_policy

    workflow = get_workflow("support")
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(Home(work))

    def timed(fn: Any) -> float:
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    rows = []
    with open_checkpointer(work / "checkpoints.db") as saver:
        before = timed(lambda: build_graph(workflow.extensions).compile(checkpointer=saver))
        runner._compiled(workflow, saver)  # noqa: SLF001 - warm the runner's cache
        after = timed(lambda: runner._compiled(workflow, saver))  # noqa: SLF001
    rows.append({"fix": "compile the graph once per Runner, copy it per drive",
                 "before_ms": before * 1000, "after_ms": after * 1000, "per": "drive"})
    known = set(workflow.tools().names())
    before = timed(lambda: load_policy(workflow.policy_path, known_tools=known))
    runner.load_policy(workflow)
    after = timed(lambda: runner.load_policy(workflow))
    rows.append({"fix": "parse the policy file only when its bytes changed",
                 "before_ms": before * 1000, "after_ms": after * 1000,
                 "per": "load (2-3 per drive)"})
    store = RunStore(work / "control.db")
    store.create(run_id="bench-lease", workflow="support", workflow_version="1",
                 tenant_id="acme", ticket_id=None, customer_id=None, requester="x",
                 policy_version=None, inputs={}, lease_owner="me", lease_ttl=120)
    before = timed(lambda: store.renew_lease("bench-lease", "me", 120))
    store.close()
    rows.append({"fix": "renew the lease once per quarter TTL, not every superstep",
                 "before_ms": before * 1000, "after_ms": 0.0,
                 "per": "superstep (one committed write saved)"})

    # Opening and closing the checkpointer per drive: closing the last connection to a WAL
    # database checkpoints it (a sync). The runner now keeps it open.
    def open_write_close() -> None:
        with open_checkpointer(work / "reopen.db") as saver:
            saver.conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
            saver.conn.execute("INSERT INTO t VALUES (1)")
            saver.conn.commit()

    with open_checkpointer(work / "reopen.db") as kept:
        kept.setup()

        def write_kept() -> None:
            kept.conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
            kept.conn.execute("INSERT INTO t VALUES (1)")
            kept.conn.commit()

        after = timed(write_kept)
    before = timed(open_write_close)
    rows.append({"fix": "keep the checkpointer (and the domain DB) open across drives",
                 "before_ms": before * 1000, "after_ms": after * 1000,
                 "per": "drive, per database (open + one commit + close vs one commit)"})

    # The checker's structured output: with_structured_output(include_raw=True) runs a
    # parallel raw/parsed runnable that starts threads on every call; a forced tool call
    # parsed by hand sends the same request.
    from verifiers.argument_check import ArgumentVerdict, check_arguments

    checker = workflow.checker()
    ticket = {"ticket_id": "TKT-1001", "customer_email": "a@example.com", "subject": "s",
              "body": "b"}

    def structured_with_raw() -> None:
        checker.with_structured_output(ArgumentVerdict, method="function_calling",
                                       include_raw=True).invoke("TICKET:{}")

    before = timed(structured_with_raw)
    after = timed(lambda: check_arguments(checker, "m", ticket, [], "add_ticket_note",
                                          {"ticket_id": "TKT-1001"}))
    rows.append({"fix": "checker: forced tool call parsed by hand, not include_raw",
                 "before_ms": before * 1000, "after_ms": after * 1000, "per": "verify"})
    runner.close()
    return rows


def commit_costs(work: Path, *, commits: int = 200) -> list[dict[str, Any]]:
    """What one committed one-row INSERT costs on this disk, per SQLite journal setting."""
    import sqlite3

    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for journal, sync, used_by in (
            ("wal", "FULL", "checkpoints.db, control.db, support.db (ledger commits)"),
            ("wal", "NORMAL", "traces.db, audit.db"),
            ("delete", "FULL", "support.db before the fix (rollback journal)")):
        path = work / f"commit-{journal}-{sync}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute(f"PRAGMA journal_mode={journal}")
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("CREATE TABLE t (x INTEGER)")
        started = time.perf_counter()
        for i in range(commits):
            conn.execute("INSERT INTO t VALUES (?)", (i,))
        rows.append({"journal": journal, "synchronous": sync, "used_by": used_by,
                     "ms_per_commit": (time.perf_counter() - started) * 1000 / commits})
        conn.close()
    return rows
