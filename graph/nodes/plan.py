"""plan: ask the planner model for the next tool call, or for the end of the run."""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from graph.context import RunContext
from graph.evidence import evidence_for_model
from graph.models import (
    EVIDENCE_MARK,
    TICKET_MARK,
    ScriptedChatModel,
    content_tool_call,
    invoke_counted,
    model_name_of,
)
from graph.state import AgentState, Proposal, add_usage, model_usage, usage_delta


def planner_messages(state: AgentState, ctx: RunContext) -> list[Any]:
    """The planner's whole input: system prompt, the ticket, and the evidence so far (every
    call with its step; folded calls as their summaries)."""
    evidence = evidence_for_model(state["evidence"])
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


NO_ACTION = "the planner gave no action"
"""Why a run goes to a human when the planner's replies held no tool call, DONE or ESCALATE."""
REASK = ("Your reply had no tool call and no DONE or ESCALATE line. Reply with exactly one "
         "tool call; or 'DONE: <one-line summary>' when the ticket is handled; or "
         "'ESCALATE: <reason>' to hand it to a human.")
_ENDING = re.compile(r"^\s*(DONE|ESCALATE)\b[\s:.\-]*(.*)", re.I | re.S)


def read_action(reply: AIMessage, tool_names: list[str], step: int,
                content_calls: bool) -> Proposal | tuple[str, str] | None:
    """What the reply asks for: a proposal, ("done" | "escalate", its text), or None when
    it holds no action (prose, chat-template debris, nothing)."""
    calls = list(reply.tool_calls)
    if not calls and not reply.invalid_tool_calls and content_calls:
        found = content_tool_call(reply.content, tool_names)
        if found is not None:
            calls = [found]  # type: ignore[list-item]
    if calls:
        call = calls[0]
        args = call["args"]
        return Proposal(call_id=call.get("id") or f"call-{step}", tool=call["name"],
                        args=dict(args) if args is not None and _storable(args) else None,
                        origin="model")
    if reply.invalid_tool_calls:
        bad = reply.invalid_tool_calls[0]
        return Proposal(call_id=bad.get("id") or f"call-{step}", tool=bad.get("name") or "",
                        args=None, origin="model")
    content = reply.content if isinstance(reply.content, str) else ""
    ending = _ENDING.match(content)
    if ending is None:
        return None
    words = ending.group(2).strip()
    return ending.group(1).lower(), words.splitlines()[0] if words else ""


def step_tool(ctx: RunContext, messages: list[Any]) -> tuple[str | None, str]:
    """The tool this step needs by the workflow's own rules (its offline planner), or
    (None, its closing words) when the rules say the work is over. A workflow whose offline
    planner is not rule-based gives ("required", "")."""
    guide = ctx.workflow.planner()
    if not isinstance(guide, ScriptedChatModel):
        return "required", ""
    reply = guide.respond(messages, [spec.openai_schema() for spec in ctx.registry])
    if reply.tool_calls:
        return reply.tool_calls[0]["name"], ""
    return None, reply.content if isinstance(reply.content, str) else ""


def plan(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    settings = ctx.planner_settings
    step = state["step"] + 1
    messages = planner_messages(state, ctx)
    update: dict[str, Any] = {"step": step}
    # The last proposal's judgements do not carry over to the next one. Only channels that
    # hold something are cleared: every write is a row in the checkpoint.
    update.update({k: None for k in ("gate", "verdict", "approval") if state.get(k) is not None})

    choice = None if settings.tool_choice == "auto" else settings.tool_choice
    if settings.tool_choice == "step":
        choice, closing = step_tool(ctx, messages)
        if choice is None:  # nothing is left to do by the rules: finish checks completion
            return {**update, "usage": usage_delta(), "proposal": None, "plan_note": closing}

    name = model_name_of(ctx.planner)
    usage = usage_delta()
    tool_names = [spec.name for spec in ctx.registry]
    said: list[str] = []
    calls = 0
    for _ask in range(settings.reasks + 1):
        attempts = invoke_counted(ctx.bound_planner(choice), messages, settings.retries)
        for attempt in attempts:
            key = f"plan:{step}" + (f":{calls}" if calls else "")
            calls += 1
            if ctx.recorder is not None:
                ctx.recorder.model_call(state["run_id"], key, node="plan", model=name,
                                        tokens_in=attempt.tokens_in,
                                        tokens_out=attempt.tokens_out,
                                        latency_s=attempt.latency_s)
            usage = add_usage(usage, model_usage(
                attempt.tokens_in, attempt.tokens_out,
                ctx.price(name, attempt.tokens_in, attempt.tokens_out)))
        reply = attempts[-1].reply
        if reply is None:  # a model outage ends in a safe hand-off
            return {**update, "usage": usage, "proposal": None, "outcome": "failed",
                    "reason": f"planner model failed: {attempts[-1].error}"}
        action = read_action(reply, tool_names, step, settings.content_tool_calls)
        if isinstance(action, dict):
            return {**update, "usage": usage, "proposal": action}
        if action is not None:
            kind, words = action
            if kind == "escalate":
                return {**update, "usage": usage, "proposal": None, "outcome": "escalated",
                        "reason": f"the planner escalated: {words or 'no reason given'}"}
            return {**update, "usage": usage, "proposal": None,
                    "plan_note": f"DONE: {words}" if words else "DONE"}
        content = reply.content if isinstance(reply.content, str) else ""
        said.append(content)
        messages = [*messages, AIMessage(content=content), HumanMessage(REASK)]
    last = " ".join(said[-1].split())[:80]
    return {**update, "usage": usage, "proposal": None, "outcome": "failed",
            "reason": f"{NO_ACTION} ({len(said)} replies; the last: {last!r})"}
