"""gate: the deterministic policy decision for the current proposal (see verifiers.gate)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import RunContext
from graph.evidence import Evidence, Refusal, evidence_key
from graph.state import AgentState
from tools.ledger import call_digest
from verifiers.gate import GateRequest, evaluate_gate, run_facts
from verifiers.history import ordered

WARNING_TIERS = frozenset({"yellow", "red"})


def gate(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    proposal = state.get("proposal")
    assert proposal is not None, "gate runs only after a proposal"
    tool_ctx = ctx.tool_ctx(state["ticket"])
    decision = evaluate_gate(GateRequest(
        tool=proposal["tool"],
        args=proposal["args"],
        usage=state["usage"],
        elapsed_seconds=ctx.clock() - state["started_at"] - state.get("waited_s", 0.0),
        kill_reason=ctx.runs.kill_reason(ctx.workflow.name),
        policy=ctx.policy,
        policy_error=ctx.policy_error,
        registry=ctx.registry,
        tool_ctx=tool_ctx,
        facts=ctx.workflow.facts,
        now=ctx.clock(),
        history=ordered(state["evidence"]),
        run=run_facts(tool_ctx, ctx.requester, ctx.workflow.name),
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
        used = state.get("refusals", 0)
        budget = ctx.policy.budgets.refusals if ctx.policy is not None else 0
        if decision.get("on_block") == "replan" and used < budget:
            # The planner gets the refusal as an observation and may propose something else.
            refusal = Refusal(by="policy", rule_id=decision["rule_id"], reason=decision["reason"])
            entry = Evidence(tool=proposal["tool"], args=dict(proposal["args"] or {}),
                             result=None, step=state["step"], refusal=refusal,
                             error=f"refused by policy rule {decision['rule_id']}: "
                                   f"{decision['reason']}")
            update.update(refusals=used + 1, proposal=None, evidence={
                evidence_key(state["step"], proposal["tool"], refused=True): entry})
            return update
        spent = (f" (refusal budget of {budget} spent)"
                 if decision.get("on_block") == "replan" else "")
        update["outcome"] = "blocked"
        update["reason"] = f"gate {decision['rule_id']}: {decision['reason']}{spent}"
    return update
