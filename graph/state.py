"""The graph's state: one TypedDict, small and bounded.

SqliteSaver stores the whole state in every checkpoint, so a list that grows with every step
would make storage grow quadratically. State therefore holds the current proposal and its
verdicts, the evidence (every call by its step, bounded in bytes with old calls folded into
summaries: graph.evidence) and counters. The full step history lives in the trace store.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, TypedDict

from graph.evidence import Evidence, merge_evidence
from graph.evidence import Refusal as Refusal  # its home moved to graph.evidence
from verifiers.gate import GateDecision, Usage

Outcome = Literal["resolved", "escalated", "blocked", "rejected", "failed", "refused"]


class Ticket(TypedDict):
    """The work item, copied once into state at the start of a run."""

    ticket_id: str
    customer_id: str | None
    customer_email: str | None
    subject: str
    body: str


class Proposal(TypedDict):
    """One tool call the planner (or an approver's edit) proposes."""

    call_id: str
    tool: str
    args: dict[str, Any] | None
    """None when the model's arguments were not valid JSON."""
    origin: Literal["model", "human_edit"]


class RuleCheck(TypedDict):
    rule_id: str
    ok: bool
    reason: str


class Verdict(TypedDict):
    """The verifier's result: rule invariants and the second-model argument check."""

    ok: bool
    invariants: list[RuleCheck]
    model_check: RuleCheck
    reason: str
    call_digest: NotRequired[str]
    """Which call (tool and arguments) this verdict is about."""


class Approval(TypedDict):
    """A human decision on a held action."""

    action: Literal["approve", "reject", "edit", "confirm"]
    by: str
    role: str
    reason: str
    policy_version: str
    policy_digest: str


def add_usage(left: Usage, right: Usage) -> Usage:
    """Usage deltas add up (LangGraph starts the channel from an empty dict)."""
    return Usage(
        model_calls=left.get("model_calls", 0) + right.get("model_calls", 0),
        tokens=left.get("tokens", 0) + right.get("tokens", 0),
        tool_calls=left.get("tool_calls", 0) + right.get("tool_calls", 0),
        retries=left.get("retries", 0) + right.get("retries", 0),
        cost_usd=round(left.get("cost_usd", 0.0) + right.get("cost_usd", 0.0), 8),
        unpriced_calls=left.get("unpriced_calls", 0) + right.get("unpriced_calls", 0),
    )


def usage_delta(**kwargs: float) -> Usage:
    base = Usage(model_calls=0, tokens=0, tool_calls=0, retries=0, cost_usd=0.0,
                 unpriced_calls=0)
    base.update(kwargs)  # type: ignore[typeddict-item]
    return base


def keep_nothing(left: list[Any], right: list[Any]) -> list[Any]:
    """The reducer of `events`: they live in the node's checkpointed writes, not in state."""
    return []


EVENTS = "events"
"""The channel a node's trace and audit events ride in (see graph.factory)."""


def model_usage(tokens_in: int, tokens_out: int, cost: float | None) -> Usage:
    """One model call's usage; a cost of None (no price known) counts as an unpriced call."""
    return usage_delta(model_calls=1, tokens=tokens_in + tokens_out, cost_usd=cost or 0.0,
                       unpriced_calls=int(cost is None))


class AgentState(TypedDict):
    """State of one run (one LangGraph thread)."""

    run_id: str
    ticket: Ticket
    started_at: float
    step: int
    """Counts proposals; part of every idempotency key."""
    usage: Annotated[Usage, add_usage]
    evidence: Annotated[dict[str, Evidence], merge_evidence]
    mutations: NotRequired[int]
    """Mutations committed by this run."""
    proposal: NotRequired[Proposal | None]
    gate: NotRequired[GateDecision | None]
    verdict: NotRequired[Verdict | None]
    approval: NotRequired[Approval | None]
    commit_checks: NotRequired[list[RuleCheck] | None]
    """The checks execute ran inside the commit transaction of the last mutation (see
    graph.commit_checks); the first failing one refused it."""
    last_call: NotRequired[Evidence | None]
    """The call execute ran last; postcheck reads it."""
    plan_note: NotRequired[str]
    """The planner's final words when it ends the run."""
    refusals: NotRequired[int]
    """Policy refusals handed to the planner so far (on_block = "replan"); the policy's
    budgets.refusals bounds them."""
    first_warning_at: NotRequired[float | None]
    held_since: NotRequired[float | None]
    """When the run began waiting for a human decision (verify routed it to approve)."""
    waited_s: NotRequired[float]
    """Seconds the run spent waiting for human decisions; the wall-clock budget counts the
    agent's time only (a hold has its own expiry)."""
    outcome: NotRequired[Outcome]
    reason: NotRequired[str]
    events: Annotated[list[Any], keep_nothing]
    """The trace and audit events a node recorded, saved with its other writes in one
    checkpoint transaction (an outbox); the runner writes them to the stores after the
    drive. State itself keeps none of them."""


class InputState(TypedDict):
    run_id: str
    ticket: Ticket
    started_at: float
    step: int
    usage: Usage
    evidence: dict[str, Evidence]
    events: NotRequired[list[Any]]
    """The run's start event, saved with the input in the first checkpoint."""


class OutputState(TypedDict):
    run_id: str
    outcome: NotRequired[Outcome]
    reason: NotRequired[str]
    usage: Usage
    mutations: NotRequired[int]
