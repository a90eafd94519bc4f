"""Section 1: per-ticket wall time and supersteps, signoff vs bare LangGraph vs create_agent.

All three run in one process, interleaved ticket by ticket (the order of the variants rotates
every round), each on its own copy of the sample database, reset before every round. A
ticket's time runs from the first call to the end of the run, including the bench approving
any held refund (signoff's `decide`, create_agent's `Command(resume=...)`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import checkpoint_bytes, median, percentile, supersteps
from bench.variants import AgentVariant, BareGraphVariant, SignoffVariant, TicketRun
from graph.workflows import get_workflow


def run(work: Path, *, rounds: int, warmup: int = 1) -> dict[str, Any]:
    variants = [SignoffVariant(work / "a"), BareGraphVariant(work / "b"),
                AgentVariant(work / "c")]
    tickets = get_workflow("support").sample_tickets()
    times: dict[tuple[str, str], list[float]] = {}
    last: dict[tuple[str, str], TicketRun] = {}
    try:
        for r in range(warmup + rounds):
            for v in variants:
                v.reset()
            order = variants[r % 3:] + variants[:r % 3]
            for ticket in tickets:
                for v in order:
                    started = time.perf_counter()
                    result = v.run(ticket)
                    elapsed = time.perf_counter() - started
                    if r >= warmup:
                        times.setdefault((v.name, ticket.ticket_id), []).append(elapsed)
                    last[(v.name, ticket.ticket_id)] = result
        rows = []
        for ticket in tickets:
            row: dict[str, Any] = {"ticket": ticket.ticket_id}
            for v in variants:
                res = last[(v.name, ticket.ticket_id)]
                row[v.name] = {
                    "median_s": median(times[(v.name, ticket.ticket_id)]),
                    "supersteps": supersteps(v.checkpoints_db, res.thread_id),
                    "tool_calls": res.tool_calls,
                    "approvals": res.approvals,
                    "outcome": res.outcome,
                    "checkpoint_bytes": checkpoint_bytes(v.checkpoints_db, res.thread_id),
                }
            rows.append(row)
    finally:
        for v in variants:
            v.close()
    names = [v.name for v in variants]
    totals = {n: sum(row[n]["median_s"] for row in rows) for n in names}
    steps = {n: sum(row[n]["supersteps"] for row in rows) for n in names}
    calls = {n: sum(row[n]["tool_calls"] for row in rows) for n in names}
    # The tickets signoff carries out (resolved): all three variants do the same tool work on
    # them, so their ratios compare like with like; on the others (b) and (c) go on to do
    # what signoff blocks.
    same = [row for row in rows if row[names[0]]["outcome"] == "resolved"]
    same_totals = {n: sum(row[n]["median_s"] for row in same) for n in names}

    def per_round(n: str) -> list[float]:
        """The same-work tickets' total in each measured round."""
        return [sum(times[(n, row["ticket"])][i] for row in same) for i in range(rounds)]

    spread = {}
    for key, other in (("ab", names[1]), ("ac", names[2])):
        ratios = [x / y for x, y in zip(per_round(names[0]), per_round(other), strict=True)]
        spread[f"same_work_ratio_{key}_rounds"] = {
            "p25": percentile(ratios, 25), "median": median(ratios),
            "p75": percentile(ratios, 75)}
    return {"variants": names, "rows": rows, "totals": totals, "supersteps": steps,
            "tool_calls": calls, "rounds": rounds,
            "ratio_ab": totals[names[0]] / totals[names[1]],
            "ratio_ac": totals[names[0]] / totals[names[2]],
            "same_work_tickets": [row["ticket"] for row in same],
            "same_work_ratio_ab": same_totals[names[0]] / same_totals[names[1]],
            "same_work_ratio_ac": same_totals[names[0]] / same_totals[names[2]],
            **spread,
            "threads_a": {row["ticket"]: last[(names[0], row["ticket"])].thread_id
                          for row in rows}}
