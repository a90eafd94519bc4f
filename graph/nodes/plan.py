"""plan: ask the planner model for the next tool call, or for the end of the run."""

from __future__ import annotations

import json
import time
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from graph.context import RunContext
from graph.models import EVIDENCE_MARK, TICKET_MARK, model_name_of
from graph.state import AgentState, Proposal, model_usage, usage_delta


def planner_messages(state: AgentState, ctx: RunContext) -> list[Any]:
    """The planner's whole input: system prompt, the ticket, and the evidence so far."""
    evidence = [
        {"tool": e["tool"], "args": e["args"], "result": e["result"], "error": e["error"]}
        for e in state["evidence"].values()
    ]
    return [
        SystemMessage(ctx.workflow.system_prompt),
        HumanMessage(TICKET_MARK + json.dumps(state["ticket"], sort_keys=True)),
        HumanMessage(EVIDENCE_MARK + json.dumps(evidence, sort_keys=True)),
    ]


INT64 = 2**63


def _storable(value: Any) -> bool:
    """Whether the checkpointer can store these model-written arguments. JSON allows integers
    of any size, msgpack does not: such arguments are treated as invalid JSON (the gate then
    blocks them) rather than crashing the run when its state is saved."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return True
    if isinstance(value, int):
        return -INT64 <= value < INT64
    if isinstance(value, dict):
        return all(isinstance(k, str) and _storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_storable(v) for v in value)
    return False


def plan(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    step = state["step"] + 1
    started = time.perf_counter()
    try:
        reply = ctx.bound_planner.invoke(planner_messages(state, ctx))
    except Exception as exc:  # noqa: BLE001 - a model outage ends in a safe hand-off
        return {"step": step, "proposal": None, "usage": usage_delta(model_calls=1),
                "outcome": "failed", "reason": f"planner model failed: {exc}"}
    latency = time.perf_counter() - started
    assert isinstance(reply, AIMessage)
    meta = reply.usage_metadata
    tokens_in = meta["input_tokens"] if meta else 0
    tokens_out = meta["output_tokens"] if meta else 0
    name = model_name_of(ctx.planner)
    cost = ctx.price(name, tokens_in, tokens_out)
    if ctx.recorder is not None:
        ctx.recorder.model_call(state["run_id"], f"plan:{step}", node="plan", model=name,
                                tokens_in=tokens_in, tokens_out=tokens_out, latency_s=latency)
    usage = model_usage(tokens_in, tokens_out, cost)
    update: dict[str, Any] = {"step": step, "usage": usage}
    # The last proposal's judgements do not carry over to the next one. Only channels that
    # hold something are cleared: every write is a row in the checkpoint.
    update.update({k: None for k in ("gate", "verdict", "approval") if state.get(k) is not None})

    proposal: Proposal | None = None
    if reply.tool_calls:
        call = reply.tool_calls[0]
        args = dict(call["args"])
        proposal = Proposal(call_id=call.get("id") or f"call-{step}", tool=call["name"],
                            args=args if _storable(args) else None, origin="model")
    elif reply.invalid_tool_calls:
        bad = reply.invalid_tool_calls[0]
        proposal = Proposal(call_id=bad.get("id") or f"call-{step}", tool=bad.get("name") or "",
                            args=None, origin="model")
    update["proposal"] = proposal
    if proposal is None:
        update["plan_note"] = reply.content if isinstance(reply.content, str) else ""
    return update
