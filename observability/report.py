"""Operational metrics over the trace store: success, escalations, latency, cost."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from observability.db import StoreSource
from observability.prices import PriceTable
from observability.reader import open_traces

PASS_VERDICTS = frozenset({"pass", "ok", "green"})



HANDED_OFF = frozenset({"escalated", "blocked", "rejected", "failed", "refused"})
"""Outcomes that hand the ticket to a human; the report groups them by why."""

_REASON_CLASS = re.compile(
    r"^(gate [\w.-]+|verifier: [\w.-]+|approval refused|rejected by|post-condition violated"
    r"|kill switch|planner model failed|the planner gave no action|the planner escalated"
    r"|not complete|[\w_-]+ kept failing)")


def reason_class(reason: str | None) -> str:
    """The stable part of a hand-off reason (the rule or check), without amounts and ids."""
    if not reason:
        return "(no reason)"
    match = _REASON_CLASS.match(reason)
    return match.group(1) if match else reason[:60]

@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles of a set of durations, in seconds (None when empty)."""

    count: int
    """How many durations were measured."""
    p50: float | None
    """The median."""
    p95: float | None
    """95% of durations are at or below this."""

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        ordered = sorted(values)
        return cls(len(ordered), percentile(ordered, 50), percentile(ordered, 95))


@dataclass(frozen=True)
class VersionSuccess:
    workflow: str
    workflow_version: str
    finished: int
    """Runs of this version that reached an outcome."""
    resolved: int
    """Of those, runs that ended "resolved" with their completion check passed."""
    success_rate: float | None
    """resolved / finished."""


@dataclass(frozen=True)
class CostLine:
    team: str
    workflow: str
    workflow_version: str
    runs: int
    cost_usd: float
    """Model spend of every run of this team/workflow/version, whatever its outcome."""


@dataclass(frozen=True)
class Report:
    runs: int
    """All runs in the store, finished or not."""
    success_by_version: tuple[VersionSuccess, ...]
    escalation_reasons: dict[str, int]
    """Reason -> count, over runs whose outcome is "escalated"."""
    model_latency: Percentiles
    tool_latency: Percentiles
    tool_calls: int
    tool_call_validity_rate: float | None
    """Share of tool calls whose arguments passed the tool's schema."""
    tool_call_success_rate: float | None
    """Share of tool calls that returned the expected shape without error."""
    postcheck_pass_rate: float | None
    """Share of post-condition checks that passed."""
    time_to_safe_fallback: Percentiles
    """From a run's first warning sign to its fallback or kill."""
    total_cost_usd: float
    successful_runs: int
    cost_per_success_usd: float | None
    """Total cost of all runs (failed and escalated included) / resolved runs."""
    cost_by: tuple[CostLine, ...]
    unpriced_models: tuple[str, ...]
    """Models with calls but no price: their cost is counted as 0."""
    resolved_unchecked: int = 0
    """Runs recorded "resolved" without a passing completion check (recorded before the
    check existed): not counted as successes."""


def percentile(ordered: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (an observed value, never blended)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _run_costs(
    conn: Any, prices: PriceTable | None
) -> tuple[dict[str, float], set[str]]:
    """Cost per run: recomputed from tokens when `prices` is given, else as recorded."""
    costs: dict[str, float] = {}
    unpriced: set[str] = set()
    for row in conn.execute(
        "SELECT run_id, model, tokens_in, tokens_out, cost_usd FROM model_calls"
    ):
        cost = (
            row["cost_usd"]
            if prices is None
            else prices.cost(row["model"], row["tokens_in"], row["tokens_out"])
        )
        if cost is None:
            unpriced.add(row["model"])
        costs[row["run_id"]] = costs.get(row["run_id"], 0.0) + (cost or 0.0)
    return costs, unpriced


def compute_report(source: StoreSource, prices: PriceTable | None = None) -> Report:
    """Compute every metric the operators' report shows from the trace store of `source`
    (a Home, a Backend or a SQLite data directory)."""
    with open_traces(source) as store:
        conn = store.conn
        runs = conn.execute(
            "SELECT run_id, workflow, workflow_version, team, outcome, reason,"
            " first_warning_at, fallback_at FROM runs"
        ).fetchall()
        costs, unpriced = _run_costs(conn, prices)
        model_latencies = [r[0] for r in conn.execute("SELECT latency_s FROM model_calls")]
        tools = conn.execute("SELECT latency_s, schema_valid, ok FROM tool_calls").fetchall()
        postchecks = [
            r[0] for r in conn.execute("SELECT verdict FROM decisions WHERE kind = 'postcheck'")
        ]
        completed = {
            r[0] for r in conn.execute("SELECT run_id FROM decisions WHERE kind = 'completion'"
                                       " AND verdict = 'pass'")
        }

    def succeeded(run: Any) -> bool:
        """Resolved, and the workflow's completion check said so."""
        return run["outcome"] == "resolved" and run["run_id"] in completed

    versions: dict[tuple[str, str], list[int]] = {}
    cost_lines: dict[tuple[str, str, str], list[float]] = {}
    for run in runs:
        if run["outcome"] is not None:
            tally = versions.setdefault((run["workflow"], run["workflow_version"]), [0, 0])
            tally[0] += 1
            tally[1] += succeeded(run)
        line = cost_lines.setdefault(
            (run["team"], run["workflow"], run["workflow_version"]), [0, 0.0]
        )
        line[0] += 1
        line[1] += costs.get(run["run_id"], 0.0)
    successes = sum(succeeded(run) for run in runs)
    total_cost = sum(costs.values())
    return Report(
        runs=len(runs),
        success_by_version=tuple(
            VersionSuccess(wf, ver, finished, resolved, _rate(resolved, finished))
            for (wf, ver), (finished, resolved) in sorted(versions.items())
        ),
        escalation_reasons=dict(
            Counter(
                f"{run['outcome']}: {reason_class(run['reason'])}"
                for run in runs if run["outcome"] in HANDED_OFF
            ).most_common()
        ),
        model_latency=Percentiles.of(model_latencies),
        tool_latency=Percentiles.of([t["latency_s"] for t in tools]),
        tool_calls=len(tools),
        tool_call_validity_rate=_rate(sum(t["schema_valid"] for t in tools), len(tools)),
        tool_call_success_rate=_rate(sum(t["ok"] for t in tools), len(tools)),
        postcheck_pass_rate=_rate(sum(v in PASS_VERDICTS for v in postchecks), len(postchecks)),
        time_to_safe_fallback=Percentiles.of(
            [
                run["fallback_at"] - run["first_warning_at"]
                for run in runs
                if run["fallback_at"] is not None and run["first_warning_at"] is not None
            ]
        ),
        total_cost_usd=total_cost,
        successful_runs=successes,
        cost_per_success_usd=total_cost / successes if successes else None,
        cost_by=tuple(
            CostLine(team, wf, ver, int(count), cost)
            for (team, wf, ver), (count, cost) in sorted(cost_lines.items())
        ),
        unpriced_models=tuple(sorted(unpriced)),
        resolved_unchecked=sum(run["outcome"] == "resolved" and not succeeded(run)
                               for run in runs),
    )
