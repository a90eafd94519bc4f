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
    reason = state.get("reason") or "stopped without a reason"
    now = ctx.clock()
    if ctx.recorder is not None:
        ctx.recorder.decision(state["run_id"], f"fallback:{state['step']}", step=state["step"],
                              kind="fallback", verdict=outcome, rule_id="fallback",
                              reason=reason,
                              data={"since_first_warning_s":
                                    now - (state.get("first_warning_at") or now)})
    return {"outcome": outcome, "reason": reason,
            "first_warning_at": state.get("first_warning_at") or now}
