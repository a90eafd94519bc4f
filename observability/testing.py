"""Helpers for tests and benchmarks: a manual clock and a synthetic-run recorder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from observability.recorder import Recorder


@dataclass
class FakeClock:
    """A clock that moves only when told to; pass it as `Recorder(clock=...)`."""

    now: float = 1_700_000_000.0
    """Epoch seconds returned by the next call."""
    step: float = 1.0
    """Seconds added after every reading, so events get distinct, ordered times."""

    def __call__(self) -> float:
        current = self.now
        self.now += self.step
        return current


@dataclass(frozen=True)
class ToolSpec:
    tool: str
    latency_s: float = 0.01
    schema_valid: bool = True
    ok: bool = True
    mutation: bool = False
    args: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None


def record_run(
    recorder: Recorder,
    run_id: str,
    *,
    outcome: str | None = "resolved",
    reason: str | None = None,
    workflow: str = "support",
    workflow_version: str = "v1",
    team: str = "care",
    customer_id: str = "C-1001",
    inputs: dict[str, Any] | None = None,
    model_calls: Iterable[tuple[str, int, int, float]] = (),
    tool_calls: Iterable[ToolSpec] = (),
    decisions: Iterable[tuple[str, str, str | None, str | None]] = (),
    completed: bool = False,
) -> None:
    """Record one synthetic run: model calls, then tool calls, then decisions, then finish.

    `model_calls` are (model, tokens_in, tokens_out, latency_s); `decisions` are
    (kind, verdict, rule_id, reason). Event keys are positional, so a replay is a no-op.
    With `completed`, a "resolved" run also records its passing completion check, as the
    graph's finish does (without it, it is a run recorded before completion checks existed).
    """
    recorder.start_run(
        run_id,
        workflow=workflow,
        workflow_version=workflow_version,
        policy_version="p1",
        tenant_id="t1",
        team=team,
        requester="operator-7",
        customer_id=customer_id,
        ticket_id=f"T-{run_id}",
        inputs=inputs or {"message": "where is my order?"},
    )
    for index, (model, tokens_in, tokens_out, latency) in enumerate(model_calls):
        recorder.model_call(
            run_id,
            f"model-{index}",
            node="plan",
            model=model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            latency_s=latency,
        )
    for index, spec in enumerate(tool_calls):
        recorder.tool_call(
            run_id,
            f"tool-{index}",
            step=f"s{index}",
            tool=spec.tool,
            args=spec.args,
            result=spec.result if spec.ok else None,
            error=None if spec.ok else "tool failed",
            schema_valid=spec.schema_valid,
            ok=spec.ok,
            latency_s=spec.latency_s,
            mutation=spec.mutation,
        )
    for index, (kind, verdict, rule_id, why) in enumerate(decisions):
        recorder.decision(
            run_id,
            f"decision-{index}",
            step=f"d{index}",
            kind=kind,
            verdict=verdict,
            rule_id=rule_id,
            reason=why,
        )
    if outcome == "resolved" and completed:
        recorder.decision(run_id, "completion", step="done", kind="completion",
                          verdict="pass", rule_id="completion", reason="the customer was answered")
    if outcome is not None:
        recorder.finish_run(run_id, outcome=outcome, reason=reason)
