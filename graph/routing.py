"""Typed routers: every way out of every deciding node is visible in a Literal."""

from __future__ import annotations

from typing import Literal

from graph.state import AgentState


def _stopped(state: AgentState) -> bool:
    return bool(state.get("outcome"))


def after_plan(state: AgentState) -> Literal["gate", "finish", "fallback"]:
    if _stopped(state):
        return "fallback"
    return "gate" if state.get("proposal") else "finish"


def after_gate(state: AgentState) -> Literal["execute", "verify", "plan", "fallback"]:
    gate = state.get("gate")
    if _stopped(state) or gate is None:
        return "fallback"
    if gate["route"] == "block":  # not stopped: the refusal went back to the planner
        return "plan"
    return gate["route"]


def after_verify(state: AgentState) -> Literal["execute", "approve", "fallback"]:
    gate, verdict = state.get("gate"), state.get("verdict")
    if _stopped(state) or gate is None or verdict is None or not verdict["ok"]:
        return "fallback"
    return "approve" if gate["tier"] == "yellow" else "execute"


def after_approve(state: AgentState) -> Literal["execute", "gate", "fallback"]:
    if _stopped(state):
        return "fallback"
    approval = state.get("approval")
    if approval is None:
        return "fallback"
    if state.get("gate") is None:  # edited, or the policy changed while it waited
        return "gate"
    return "execute"


def after_execute(state: AgentState) -> Literal["postcheck", "plan", "fallback"]:
    if _stopped(state):
        return "fallback"
    call, gate = state.get("last_call"), state.get("gate")
    mutated = call is not None and call["error"] is None and gate is not None \
        and gate["route"] == "verify"
    return "postcheck" if mutated else "plan"


def after_postcheck(state: AgentState) -> Literal["plan", "fallback"]:
    return "fallback" if _stopped(state) else "plan"
