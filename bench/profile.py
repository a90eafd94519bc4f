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

    from checkpoints.backend import SqliteBackend
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
    store = RunStore.open(SqliteBackend(work))
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

    from langchain_core.utils.function_calling import convert_to_openai_tool

    from verifiers.argument_check import VERDICT_TOOL, verdict_tool

    before = timed(lambda: checker.bind_tools([convert_to_openai_tool(ArgumentVerdict)],
                                              tool_choice=VERDICT_TOOL))
    after = timed(lambda: checker.bind_tools([verdict_tool()], tool_choice=VERDICT_TOOL))
    rows.append({"fix": "checker: the verdict's tool schema built once, not per call",
                 "before_ms": before * 1000, "after_ms": after * 1000, "per": "verify"})
    planner = workflow.planner()
    registry = workflow.tools()
    before = timed(lambda: planner.bind_tools([spec.openai_schema() for spec in registry]))
    rows.append({"fix": "planner bound to the tool contracts once per drive, not per plan",
                 "before_ms": before * 1000, "after_ms": 0.0,
                 "per": "plan step after a drive's first"})

    # The recorder: one transaction per event (two with the audit log) before; now a node's
    # events are held, saved with its checkpoint writes, and written once per drive.
    from observability.recorder import Recorder

    recorder = Recorder(work / "recorder-fix")
    counter = iter(range(10**9))

    def record_one_ticket() -> str:
        run_id = f"bench-{next(counter)}"
        recorder.start_run(run_id, workflow="support", workflow_version="1",
                           policy_version="1", tenant_id="acme", team="care", requester="x",
                           customer_id="C-1", ticket_id="TKT-1001", inputs=dict(ticket))
        record_ticket_events(recorder, run_id)
        return run_id

    def record_one_ticket_held() -> None:
        with recorder.capture() as events:
            record_one_ticket()
        recorder.write(events)

    before = timed(record_one_ticket)
    after = timed(record_one_ticket_held)
    recorder.close()
    rows.append({"fix": "trace and audit events written once per drive, not per event",
                 "before_ms": before * 1000, "after_ms": after * 1000,
                 "per": "ticket (a refund's 4 tool calls, 5 model calls, 11 decisions)"})

    # Audit verification: before, every payload was parsed and re-serialised to be hashed,
    # with the whole chain in a list; now the stored canonical text is hashed as it streams.
    import json

    from observability.audit import AuditEntry, AuditLog
    from observability.chain import entry_hash

    log = AuditLog(work / "verify-fix", clock=time.time)
    log.append_many([AuditEntry("gate", f"run-{i // 10}", {"step": i, "verdict": "green",
                                                           "data": {"tool": "get_order"}},
                                f"k{i}", None) for i in range(10_000)])

    def verify_old_way() -> None:
        rows = list(log._conn.execute(  # noqa: SLF001 - the old read, for comparison
            "SELECT seq, prev_hash, entry_hash, kind, run_id, payload, at FROM audit"
            " ORDER BY seq"))
        for seq, prev, digest, kind, run_id, payload, at in rows:
            assert entry_hash(seq, prev, kind, run_id, json.loads(payload), at) == digest

    before = timed(verify_old_way)
    after = timed(lambda: log.verify())
    log.close()
    rows.append({"fix": "audit verify hashes the stored text, streaming the rows",
                 "before_ms": before * 1000, "after_ms": after * 1000,
                 "per": "10,000 entries"})
    runner.close()
    return rows


def record_ticket_events(recorder: Any, run_id: str) -> None:
    """The events a refund ticket (TKT-1001) records, in the order its nodes record them."""
    order = {"order_id": "A-1001", "status": "delivered", "total_cents": 2000}
    calls = [("lookup_customer", {"email": "a@example.com"}, {"customer_id": "C-1"}, False),
             ("get_order", {"order_id": "A-1001"}, order, False),
             ("create_refund_request", {"order_id": "A-1001", "amount_cents": 2000},
              {"refund_id": "R-1", "amount_cents": 2000}, True),
             ("add_ticket_note", {"ticket_id": "TKT-1001", "note": "refunded $20.00"},
              {"note_id": "N-1"}, True)]
    for step, (tool, args, result, mutation) in enumerate(calls, 1):
        recorder.model_call(run_id, f"plan:{step}", node="plan", model="scripted",
                            tokens_in=300, tokens_out=20, latency_s=0.001)
        recorder.decision(run_id, f"gate:{step}", step=str(step), kind="gate",
                          verdict="green", rule_id="refund.small", reason="within policy",
                          data={"tool": tool, "args": args, "route": "execute"})
        if mutation:
            recorder.evidence(run_id, f"evidence:{step}", source="get_order", ref="A-1001")
            recorder.model_call(run_id, f"verify:{step}", node="verify", model="scripted",
                                tokens_in=400, tokens_out=20, latency_s=0.001)
            for rule in ("order_of_customer", "within_balance"):
                recorder.decision(run_id, f"rules:{step}:{rule}", step=str(step),
                                  kind="verify_rules", verdict="pass", rule_id=rule,
                                  reason="holds")
            recorder.decision(run_id, f"model:{step}", step=str(step), kind="verify_model",
                              verdict="pass", rule_id="model_check", reason="justified")
        recorder.tool_call(run_id, f"tool:{step}", step=str(step), tool=tool, args=args,
                           result=result, error=None, schema_valid=True, ok=True,
                           latency_s=0.001, mutation=mutation)
    recorder.model_call(run_id, "plan:5", node="plan", model="scripted", tokens_in=300,
                        tokens_out=20, latency_s=0.001)
    recorder.finish_run(run_id, outcome="resolved", reason="done")


def commit_costs(work: Path, *, commits: int = 200) -> list[dict[str, Any]]:
    """What one committed one-row INSERT costs on this disk, per SQLite journal setting."""
    import os
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
    # A row that no longer fits one 4 KiB page costs a second page in every commit. The two
    # sizes alternate commit by commit, so a change in the disk's speed hits both alike.
    sizes = (3500, 5000)
    conns, blobs, spent = {}, {}, dict.fromkeys(sizes, 0.0)
    for size in sizes:
        conns[size] = sqlite3.connect(work / f"commit-row-{size}.db", isolation_level=None)
        conns[size].execute("PRAGMA journal_mode=wal")
        conns[size].execute("CREATE TABLE t (x BLOB)")
        blobs[size] = os.urandom(size)
    for _ in range(commits):
        for size in sizes:
            started = time.perf_counter()
            conns[size].execute("INSERT INTO t VALUES (?)", (blobs[size],))
            spent[size] += time.perf_counter() - started
    for size in sizes:
        conns[size].close()
        rows.append({"journal": "wal", "synchronous": "FULL",
                     "used_by": f"the same, one {size / 1024:.1f} KiB row per commit"
                                + (" (fits one page)" if size < 4000 else
                                   " (spills to a second page)") + ", interleaved",
                     "ms_per_commit": spent[size] * 1000 / commits})
    return rows
