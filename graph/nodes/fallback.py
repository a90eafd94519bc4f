"""fallback: stop the run safely and hand it to a human with the reason.

It changes nothing in the domain; the run registry (written by the runner from the final
state) is the hand-off queue that `signoff runs --status blocked` lists.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import RunContext
from graph.state import AgentState


def fallback(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    outcome = state.get("outcome") or "failed"
    reason = (state.get("reason") or "stopped without a reason") + _part_way(ctx, state)
    now = ctx.clock()
    if ctx.recorder is not None:
        ctx.recorder.decision(state["run_id"], f"fallback:{state['step']}", step=state["step"],
                              kind="fallback", verdict=outcome, rule_id="fallback",
                              reason=reason,
                              data={"since_first_warning_s":
                                    now - (state.get("first_warning_at") or now)})
    return {"outcome": outcome, "reason": reason,
            "first_warning_at": state.get("first_warning_at") or now}


def _part_way(ctx: RunContext, state: AgentState) -> str:
    """What a run stopped after some of its changes committed leaves undone, said plainly:
    a refund without the customer's note must not look like a clean stop."""
    if not state.get("mutations"):
        return ""
    committed = [e["tool"] for e in state["evidence"].values() if e["error"] is None
                 and (spec := ctx.registry.get(e["tool"])) is not None and spec.mutates]
    check = ctx.workflow.completion
    try:
        done, why = check(ctx.tool_ctx(state["ticket"]), list(state["evidence"].values())) \
            if check is not None else (False, "the workflow declares no completion check")
    except Exception as exc:  # noqa: BLE001 - a check that cannot decide counts as undone
        done, why = False, f"the completion check could not decide: {exc}"
    if done:
        return ""
    return (f"; STOPPED PART-WAY: {len(committed)} change(s) already committed "
            f"({', '.join(committed)}) but the rest of the action did not run ({why}): "
            "a human must finish or undo it")
