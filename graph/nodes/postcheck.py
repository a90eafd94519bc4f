"""postcheck: business post-conditions after a mutation committed.

A violation stops the run and hands it to a human with the reason (the mutation has already
committed; the point is that nothing further happens and a person looks at it now).
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import RunContext
from graph.state import AgentState


def postcheck(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    call = state.get("last_call")
    assert call is not None and call["result"] is not None
    tool_ctx = ctx.tool_ctx(state["ticket"])
    failures = []
    for condition in ctx.workflow.postconditions.get(call["tool"], ()):
        rule_id = getattr(condition, "rule_id", getattr(condition, "__name__", "postcondition"))
        try:
            ok, reason = condition(tool_ctx, call["tool"], call["args"], call["result"])
        except Exception as exc:  # noqa: BLE001 - a check that cannot decide counts as failed
            ok, reason = False, f"could not be checked: {exc}"
        if ctx.recorder is not None:
            ctx.recorder.decision(state["run_id"], f"postcheck:{state['step']}:{rule_id}",
                                  step=state["step"], kind="postcheck",
                                  verdict="pass" if ok else "fail", rule_id=rule_id,
                                  reason=reason)
        if not ok:
            failures.append(f"{rule_id}: {reason}")
    if failures:
        return {"outcome": "failed", "reason": "post-condition violated: " + "; ".join(failures),
                "first_warning_at": state.get("first_warning_at") or ctx.clock()}
    return {}
