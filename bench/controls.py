"""Section 6: what each control costs, measured by turning it off, one at a time.

(a) as in section 1, next to copies of it that each lack one control, and (b), interleaved
ticket by ticket on the same-work tickets (the order rotates every round, as in section 1).
A control's price is the difference between its copy and (a): the whole effect on a
ticket's wall time, including what the control adds to LangGraph's writes and loop, which a
timer around the control's own code (section 6's breakdown) does not see.

A second copy of (a) with nothing turned off is the noise floor: how far two identical
variants drift apart in this run. Differences no larger than its distance from (a) are noise.

The checker and the registry's sync are turned off here, in the bench, by replacing one
function or setting for the copy's own drives; signoff has no switch for them. The
recorder's copy runs as SIGNOFF_TRACES=off would, a setting the release gate
(`signoff gate`) refuses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from bench.breakdown import SAME_WORK
from bench.common import median
from bench.variants import BareGraphVariant, SignoffVariant, TicketRun
from graph.context import SampleTicket
from graph.runner import Home, Runner
from graph.workflows import get_workflow

Off = Callable[["WithoutControl"], AbstractContextManager[Any]]


@contextmanager
def _no_checker(variant: WithoutControl) -> Iterator[None]:
    """The verifier's second-model call answers "pass" at once; the rule invariants stay."""
    import graph.nodes.verify as verify
    from verifiers.argument_check import CheckOutcome

    original = verify.check_arguments

    def passing(checker: Any, model_name: str, *args: Any, **kwargs: Any) -> CheckOutcome:
        return CheckOutcome(True, "not checked (bench)", model_name, 0, 0, 0.0)

    verify.check_arguments = passing  # type: ignore[assignment]
    try:
        yield
    finally:
        verify.check_arguments = original


@contextmanager
def _unsynced_registry(variant: WithoutControl) -> Iterator[None]:
    """control.db's commits are not synced to disk (the run row, leases, final status)."""
    variant.runner.runs.conn.execute("PRAGMA synchronous=OFF")
    try:
        yield
    finally:
        variant.runner.runs.conn.execute("PRAGMA synchronous=FULL")


@contextmanager
def _all_three(variant: WithoutControl) -> Iterator[None]:
    with _no_checker(variant), _unsynced_registry(variant):
        yield


class WithoutControl(SignoffVariant):
    """(a) with one control off: `off` wraps each of its tickets; `recorder=False` runs the
    Runner with no trace and audit recorder."""

    def __init__(self, name: str, home: Path, off: Off | None = None, *,
                 recorder: bool = True) -> None:
        super().__init__(home)
        self.name = name
        self.off = off
        if not recorder:
            self.runner.close()
            self.runner = Runner(Home(home))

    def run(self, ticket: SampleTicket) -> TicketRun:
        with self.off(self) if self.off is not None else nullcontext():
            return super().run(ticket)


FULL = "(a) every control on"
VARIANTS: list[tuple[str, Off | None, bool, str]] = [
    (FULL, None, True, ""),
    ("(a) again, nothing off (the noise floor)", None, True, ""),
    ("without the trace and audit recorder", None, False,
     "no events held, saved with the writes or written to traces.db and audit.db"),
    ("without the verifier's second-model call", _no_checker, True,
     "the checker answers pass at once; rule invariants still run"),
    ("without syncing the run registry", _unsynced_registry, True,
     "control.db at synchronous=OFF: the run row, leases and final status"),
    ("without all three", _all_three, False, "the three rows above together"),
]


def run(work: Path, *, rounds: int, warmup: int = 1) -> dict[str, Any]:
    variants: list[Any] = [WithoutControl(name, work / f"v{i}", off, recorder=recorder)
                           for i, (name, off, recorder, _) in enumerate(VARIANTS)]
    variants.append(BareGraphVariant(work / "b"))
    tickets = [t for t in get_workflow("support").sample_tickets() if t.ticket_id in SAME_WORK]
    times: dict[tuple[str, str], list[float]] = {}
    cpu: dict[str, float] = {}
    outcomes: dict[str, set[str]] = {}
    try:
        for r in range(warmup + rounds):
            for v in variants:
                v.reset()
            k = r % len(variants)
            order = variants[k:] + variants[:k]
            for ticket in tickets:
                for v in order:
                    started, cpu_started = time.perf_counter(), time.process_time()
                    result = v.run(ticket)
                    elapsed = time.perf_counter() - started
                    outcomes.setdefault(v.name, set()).add(result.outcome)
                    if r >= warmup:
                        times.setdefault((v.name, ticket.ticket_id), []).append(elapsed)
                        cpu[v.name] = cpu.get(v.name, 0.0) + time.process_time() - cpu_started
    finally:
        for v in variants:
            v.close()
    totals = {v.name: sum(median(times[(v.name, t.ticket_id)]) for t in tickets) * 1000
              for v in variants}
    bare = variants[-1].name
    rows = []
    for name, _, _, what in VARIANTS:
        rows.append({"variant": name, "what": what, "ms": totals[name],
                     "cpu_ms": cpu[name] * 1000 / rounds,
                     "vs_full_ms": totals[name] - totals[FULL],
                     "ratio_to_b": totals[name] / totals[bare],
                     "outcomes": sorted(outcomes[name])})
    rows.append({"variant": bare, "what": "", "ms": totals[bare],
                 "cpu_ms": cpu[bare] * 1000 / rounds,
                 "vs_full_ms": totals[bare] - totals[FULL], "ratio_to_b": 1.0,
                 "outcomes": sorted(outcomes[bare])})
    return {"tickets": list(SAME_WORK), "rounds": rounds, "rows": rows}
