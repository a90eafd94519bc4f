"""finish: the planner ended the run; record how."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import RunContext
from graph.state import AgentState

HANDOFF_RISK = "handoff"


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
    return {"outcome": "resolved", "reason": note or "done"}
