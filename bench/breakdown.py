"""Section 6: where (a)'s extra time goes, part by part, next to (b) on the same tickets.

The tickets all three variants carry out (section 1's "same work" set) run through (a) and
(b) in one process, alternating every round. Wall clock is summed per part by timing
wrappers: each graph node, the checkpointer's writes and reads (LangGraph saves on a worker
thread, but durability "sync" makes the loop wait for it), signoff's trace and audit write,
and the run registry. "The rest" is the LangGraph loop (routing, channel updates, task
scheduling) and the runner's own code: the round's time minus the parts.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.variants import BareGraphVariant, SignoffVariant
from graph.workflows import get_workflow

SAME_WORK = ("TKT-1001", "TKT-1002", "TKT-1004", "TKT-1005", "TKT-2001")
NODES = ("plan", "gate", "verify", "approve", "execute", "postcheck", "finish")


class _Clock:
    """Sums wall time per (variant, part); parts may be timed on any thread."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], float] = defaultdict(float)
        self.variant = ""
        self._lock = threading.Lock()

    def timed(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.totals[(self.variant, part)] += time.perf_counter() - started
        return wrapper


@contextmanager
def _instrumented(clock: _Clock) -> Iterator[None]:
    """Wrap the parts in timers for the block; everything is put back afterwards."""
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import StateGraph

    from checkpoints.runs import RunStore
    from observability.recorder import Recorder

    patches: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, part: str) -> None:
        original = getattr(owner, name)
        patches.append((owner, name, original))
        setattr(owner, name, clock.timed(part, original))

    for name in ("put", "put_writes"):
        patch(SqliteSaver, name, "checkpoint writes (put, put_writes)")
    patch(SqliteSaver, "get_tuple", "checkpoint reads (get_tuple)")
    patch(Recorder, "write", "trace + audit write, once per drive")
    for name in ("create", "set_status", "acquire_lease", "release_lease", "renew_lease"):
        patch(RunStore, name, "run registry writes (control.db)")

    add_node = StateGraph.add_node

    def timed_add_node(self: Any, node: Any, action: Any = None, **kwargs: Any) -> Any:
        if isinstance(node, str) and node in NODES and action is not None:
            action = clock.timed(f"node: {node}", action)
        return add_node(self, node, action, **kwargs)

    patches.append((StateGraph, "add_node", add_node))
    StateGraph.add_node = timed_add_node  # type: ignore[method-assign]
    try:
        yield
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def run(work: Path, *, rounds: int, warmup: int = 1) -> dict[str, Any]:
    clock = _Clock()
    tickets = [t for t in get_workflow("support").sample_tickets()
               if t.ticket_id in SAME_WORK]
    totals: dict[str, float] = defaultdict(float)
    with _instrumented(clock):
        variants = [SignoffVariant(work / "a"), BareGraphVariant(work / "b")]
        try:
            for r in range(warmup + rounds):
                for v in variants if r % 2 else variants[::-1]:
                    v.reset()
                    clock.variant = v.name if r >= warmup else "warmup"
                    started = time.perf_counter()
                    for ticket in tickets:
                        v.run(ticket)
                    if r >= warmup:
                        totals[v.name] += time.perf_counter() - started
        finally:
            for v in variants:
                v.close()
    names = [v.name for v in variants]
    parts = sorted({part for (variant, part) in clock.totals if variant in names})
    rows = []
    for part in parts:
        rows.append({"part": part, **{n: clock.totals[(n, part)] * 1000 / rounds
                                      for n in names}})
    rows.append({"part": "the rest (LangGraph loop, routing, runner code)",
                 **{n: (totals[n] - sum(clock.totals[(n, p)] for p in parts)) * 1000 / rounds
                    for n in names}})
    return {"variants": names, "tickets": list(SAME_WORK), "rounds": rounds, "rows": rows,
            "totals_ms": {n: totals[n] * 1000 / rounds for n in names}}
