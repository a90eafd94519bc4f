"""finish: the planner ended the run; record how.

"resolved" is earned, not assumed: the workflow's completion check must pass (for support:
the customer got an answer on the ticket). Otherwise the run goes to a human with the check's
reason, and the report does not count it as a success.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import RunContext
from graph.state import AgentState

HANDOFF_RISK = "handoff"
NOT_COMPLETE = "not complete"
"""How the reason of a run that ended without passing its completion check begins."""


def finish(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    handed_off = any(
        e["error"] is None and (spec := ctx.registry.get(e["tool"])) is not None
        and spec.risk == HANDOFF_RISK
        for e in state["evidence"].values()
    )
    note = (state.get("plan_note") or "").removeprefix("DONE:").strip()
    if handed_off:
        return {"outcome": "escalated", "reason": note or "handed to a human by the agent"}
    check = ctx.workflow.completion
    if check is None:
        done, why = False, f"workflow {ctx.workflow.name} declares no completion check"
    else:
        try:
            done, why = check(ctx.tool_ctx(state["ticket"]), list(state["evidence"].values()))
        except Exception as exc:  # noqa: BLE001 - a check that cannot decide fails closed
            done, why = False, f"the completion check could not decide: {exc}"
    if ctx.recorder is not None:
        ctx.recorder.decision(state["run_id"], f"completion:{state['step']}",
                              step=state["step"], kind="completion",
                              verdict="pass" if done else "fail", rule_id="completion",
                              reason=why)
    refused = [e["refusal"] for e in state["evidence"].values() if e.get("refusal")]
    if not done and refused and not state.get("mutations"):
        # Nothing changed because something said no: a refusal, counted as one.
        last = refused[-1]
        return {"outcome": "refused",
                "reason": f"refused by {'policy rule' if last['by'] == 'policy' else 'tool'} "
                          f"{last['rule_id']}: {last['reason']}",
                "first_warning_at": state.get("first_warning_at") or ctx.clock()}
    if not done:
        return {"outcome": "failed", "reason": f"{NOT_COMPLETE}: {why}"
                + (f" (the planner said: {note[:120]})" if note else ""),
                "first_warning_at": state.get("first_warning_at") or ctx.clock()}
    return {"outcome": "resolved", "reason": note or "done"}
