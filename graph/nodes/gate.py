"""gate: the deterministic policy decision for the current proposal (see verifiers.gate)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import RunContext
from graph.state import AgentState
from tools.ledger import call_digest
from verifiers.gate import GateRequest, evaluate_gate

WARNING_TIERS = frozenset({"yellow", "red"})


def gate(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    proposal = state.get("proposal")
    assert proposal is not None, "gate runs only after a proposal"
    decision = evaluate_gate(GateRequest(
        tool=proposal["tool"],
        args=proposal["args"],
        usage=state["usage"],
        elapsed_seconds=ctx.clock() - state["started_at"] - state.get("waited_s", 0.0),
        kill_reason=ctx.runs.kill_reason(ctx.workflow.name),
        policy=ctx.policy,
        policy_error=ctx.policy_error,
        registry=ctx.registry,
        tool_ctx=ctx.tool_ctx(state["ticket"]),
        facts=ctx.workflow.facts,
        now=ctx.clock(),
    ))
    decision["call_digest"] = call_digest(proposal["tool"], proposal["args"])
    if ctx.recorder is not None:
        ctx.recorder.decision(
            state["run_id"],
            f"gate:{state['step']}:{proposal['call_id']}:{proposal['origin']}:"
            f"{decision.get('policy_digest', '')[:12]}",
            step=state["step"], kind="gate", verdict=decision["tier"],
            rule_id=decision["rule_id"], reason=decision["reason"],
            data={"tool": proposal["tool"], "args": proposal["args"], "route": decision["route"]})
    update: dict[str, Any] = {"gate": decision}
    if decision["tier"] in WARNING_TIERS and not state.get("first_warning_at"):
        update["first_warning_at"] = ctx.clock()
    if decision["route"] == "block":
        update["outcome"] = "blocked"
        update["reason"] = f"gate {decision['rule_id']}: {decision['reason']}"
    return update
