"""Metrics over case results, and the comparison of two reports (version A against B)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def _rate(passed: int, total: int) -> float:
    return round(passed / total, 4) if total else 0.0


def _group(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    passed = sum(1 for r in results if r["passed"])
    return {"cases": len(results), "passed": passed, "failed": len(results) - passed,
            "pass_rate": _rate(passed, len(results)),
            "unauthorized_mutations": sum(len(r["unauthorized"]) for r in results),
            "cases_with_unauthorized": sum(1 for r in results if r["unauthorized"])}


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pass rates overall, by set and by category; unauthorized mutations; outcomes; timing."""
    seconds = [r["seconds"] for r in results]
    cost = sum(r.get("cost_usd", 0.0) for r in results)  # reports from before lack it
    passed = sum(1 for r in results if r["passed"])
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    sets = sorted({r["set"] for r in results})
    categories = sorted({(r["set"], r["category"]) for r in results})
    return {
        **_group(results),
        "mutations_committed": sum(len(r["mutations"]) for r in results),
        "outcomes": dict(sorted(outcomes.items())),
        "by_set": {s: _group([r for r in results if r["set"] == s]) for s in sets},
        "by_category": {f"{s}/{c}": _group([r for r in results
                                            if (r["set"], r["category"]) == (s, c)])
                        for s, c in categories},
        # Model spend, priced as in production; failed and escalated cases count as cost.
        "cost_usd_total": round(cost, 6),
        "cost_per_passed_usd": round(cost / passed, 6) if passed else None,
        "seconds_total": round(sum(seconds), 2),
        "seconds_per_case": round(statistics.fmean(seconds), 4) if seconds else 0.0,
        "seconds_p95": round(sorted(seconds)[int(0.95 * (len(seconds) - 1))], 4)
        if seconds else 0.0,
    }


@dataclass
class Comparison:
    """Deltas from report A to report B; `regressions` lists what got worse."""

    metrics: list[tuple[str, float, float]] = field(default_factory=list)
    """(metric, value in A, value in B)."""
    cases: list[tuple[str, str, str]] = field(default_factory=list)
    """(case id, status in A, status in B) for cases whose status changed."""
    regressions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _status(case: Mapping[str, Any]) -> str:
    if case.get("unauthorized"):
        return "unauthorized"
    return "pass" if case["passed"] else "fail"


def _metric_rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> Iterable[tuple[str, Any, Any]]:
    ma, mb = a["metrics"], b["metrics"]
    for key in ("pass_rate", "unauthorized_mutations", "seconds_per_case"):
        yield key, ma.get(key, 0), mb.get(key, 0)
    if ma.get("cost_per_passed_usd") is not None and mb.get("cost_per_passed_usd") is not None:
        yield "cost_per_passed_usd", ma["cost_per_passed_usd"], mb["cost_per_passed_usd"]
    for scope in ("by_set", "by_category"):
        for name in sorted(set(ma.get(scope, {})) | set(mb.get(scope, {}))):
            ga, gb = ma.get(scope, {}).get(name), mb.get(scope, {}).get(name)
            if ga is None or gb is None:
                continue
            yield f"{name} pass_rate", ga["pass_rate"], gb["pass_rate"]
            yield f"{name} unauthorized", ga["unauthorized_mutations"], \
                gb["unauthorized_mutations"]
    sa, sb = a.get("shadow"), b.get("shadow")
    if sa and sb:
        yield "shadow agreement_rate", sa["agreement_rate"], sb["agreement_rate"]
        yield "shadow db_changed", sa["db_changed"], sb["db_changed"]


HIGHER_IS_BETTER = ("pass_rate", "agreement_rate")
LOWER_IS_BETTER = ("unauthorized", "unauthorized_mutations", "db_changed")


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> Comparison:
    """What changed from report A to report B, and which changes are regressions: a lower
    pass or agreement rate, more unauthorized mutations, a case that passed and now fails."""
    if a.get("kind") != b.get("kind"):
        raise ValueError(f"cannot compare a {a.get('kind')} report with a {b.get('kind')} one")
    out = Comparison()
    for name, va, vb in _metric_rows(a, b):
        out.metrics.append((name, va, vb))
        if name.endswith(HIGHER_IS_BETTER) and vb < va:
            out.regressions.append(f"{name} fell from {va:.2%} to {vb:.2%}")
        elif name.endswith(LOWER_IS_BETTER) and vb > va:
            out.regressions.append(f"{name} rose from {va} to {vb}")
    cases_a = {c["id"]: c for c in a["cases"]}
    cases_b = {c["id"]: c for c in b["cases"]}
    for case_id in sorted(set(cases_a) & set(cases_b)):
        sa, sb = _status(cases_a[case_id]), _status(cases_b[case_id])
        if sa == sb:
            continue
        out.cases.append((case_id, sa, sb))
        if sb == "unauthorized" or (sa == "pass" and sb == "fail"):
            why = "; ".join(cases_b[case_id]["failures"])[:160]
            out.regressions.append(f"{case_id}: {sa} -> {sb} ({why})")
    only_a, only_b = set(cases_a) - set(cases_b), set(cases_b) - set(cases_a)
    if only_a or only_b:
        out.notes.append(f"{len(only_a)} case(s) only in A, {len(only_b)} only in B "
                         "(different sets or --limit); compared the common ones")
    return out
