"""approve: pause for a human decision on a held (yellow) action.

`interrupt()` is the first statement: on resume LangGraph re-runs this node from its top, so
nothing may happen before it. The decision is approve, reject or edit; an edit goes back
through gate and verify; an approval made under another policy version is gated again.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from graph.approvals import check_decision
from graph.context import RunContext
from graph.errors import BadDecision
from graph.state import AgentState, Approval, Proposal


def approve(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    payload = interrupt({"proposal": state.get("proposal"), "gate": state.get("gate"),
                         "verdict": state.get("verdict")})
    ctx = runtime.context
    proposal, held_gate = state.get("proposal"), state.get("gate")
    assert proposal is not None and held_gate is not None
    # The wait is the human's time, not the agent's: the wall-clock budget leaves it out.
    waited = {"held_since": None, "waited_s": state.get("waited_s", 0.0)
              + max(0.0, ctx.clock() - (state.get("held_since") or ctx.clock()))}
    try:
        decision, role = check_decision(payload, requester=ctx.requester, policy=ctx.policy,
                                        tenant_id=ctx.tenant_id,
                                        requester_role=ctx.requester_role,
                                        required_roles=held_gate.get("approver_roles"),
                                        customer=state["ticket"].get("customer_email"))
    except BadDecision as exc:
        return {**waited, "outcome": "blocked", "reason": f"approval refused: {exc}"}
    assert ctx.policy is not None
    approval = Approval(action=decision.action, by=decision.by, role=role,
                        reason=decision.reason, policy_version=ctx.policy.version,
                        policy_digest=ctx.policy.digest)
    if ctx.recorder is not None:
        ctx.recorder.decision(
            state["run_id"], f"approval:{state['step']}:{proposal['call_id']}:{proposal['origin']}",
            step=state["step"], kind="approval", verdict=decision.action, rule_id=f"role:{role}",
            reason=decision.reason or decision.action, actor=decision.by,
            data={"by": decision.by, "role": role, "tool": proposal["tool"],
                  "args": decision.args if decision.action == "edit" else proposal["args"],
                  "policy_version": ctx.policy.version})
    update: dict[str, Any] = {**waited, "approval": approval}
    if decision.action == "reject":
        update.update(outcome="rejected",
                      reason=f"rejected by {decision.by} ({role}): {decision.reason}")
    elif decision.action == "edit":
        assert decision.args is not None
        update["proposal"] = Proposal(call_id=proposal["call_id"], tool=proposal["tool"],
                                      args=decision.args, origin="human_edit")
        update["gate"] = None
    elif held_gate.get("policy_digest") != ctx.policy.digest:
        # The policy changed while the run waited: gate the action again under the new one.
        update["gate"] = None
    return update
