"""Shadow mode: what the agent would have done, compared with what a human actually did.

A shadow run (`Runner(shadow=True)`) stops at its first mutating proposal, before the only
node that mutates, so the recommendation is that proposal with its gate tier; a run the
controls stop first recommends a hand-off to a person. Agreement is judged on the effect:
the same refund (order and amount), a reply, or no money moving and a person deciding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from evals.cases import HumanAction
from graph.runner import SHADOW_STATUS, RunResult

ACTION_OF_TOOL = {"create_refund_request": "refund", "add_ticket_note": "reply",
                  "escalate_to_human": "escalate"}
NO_MONEY = frozenset({"escalate", "hand_off", "none"})


def money(cents: int | None) -> str:
    return "-" if cents is None else f"${cents / 100:,.2f}"


@dataclass(frozen=True)
class Recommendation:
    """The agent's recommended action in shadow mode."""

    action: str
    """refund, reply, escalate, hand_off (the controls stopped the run) or none."""
    order_id: str | None = None
    amount_cents: int | None = None
    tier: str | None = None
    """The gate's tier for the proposal: green runs alone, yellow needs an approval."""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.action == "refund":
            return f"refund {money(self.amount_cents)} on {self.order_id} ({self.tier})"
        return self.action if self.action != "hand_off" else f"hand-off ({self.reason[:60]})"


def recommendation_of(result: RunResult | None) -> Recommendation:
    """Read the recommendation off a shadow run's result."""
    if result is None:
        return Recommendation("hand_off", reason="the ticket was refused at intake")
    if result.status != SHADOW_STATUS:
        action = "none" if result.status == "resolved" else "hand_off"
        return Recommendation(action, reason=f"{result.status}: {result.reason or ''}")
    pending = result.pending or {}
    proposal = pending.get("proposal") or {}
    args = proposal.get("args") or {}
    gate = pending.get("gate") or {}
    return Recommendation(ACTION_OF_TOOL.get(proposal.get("tool", ""), "none"),
                          order_id=args.get("order_id"), amount_cents=args.get("amount_cents"),
                          tier=gate.get("tier"), reason=result.reason or "")


@dataclass(frozen=True)
class Agreement:
    status: str
    """agree, disagree, or deferred (the agent left to a person what a human did)."""
    delta: str
    money_delta_cents: int | None
    """Agent refund minus human refund, when either moved money and they differ."""


def agreement(human: HumanAction, agent: Recommendation) -> Agreement:
    """Compare the human's action with the agent's recommendation."""
    agent_cents = agent.amount_cents if agent.action == "refund" else 0
    human_cents = human.amount_cents if human.action == "refund" else 0
    said = f"human: {_human(human)}; agent: {agent.describe()}"
    if human.action == "refund" and agent.action == "refund":
        if (agent.order_id, agent.amount_cents) == (human.order_id, human.amount_cents):
            return Agreement("agree", said, None)
        return Agreement("disagree", said, (agent_cents or 0) - (human_cents or 0))
    if human.action == agent.action or (human.action in {"escalate", "decline"}
                                        and agent.action in NO_MONEY):
        return Agreement("agree", said, None)
    if agent.action in NO_MONEY:
        return Agreement("deferred", said, None)
    return Agreement("disagree", said, (agent_cents or 0) - (human_cents or 0) or None)


def _human(human: HumanAction) -> str:
    if human.action == "refund":
        return f"refund {money(human.amount_cents)} on {human.order_id}"
    return human.action


def shadow_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement metrics over shadow case results (as dicts)."""
    judged = [r for r in results if r.get("agreement")]
    count = {k: sum(1 for r in judged if r["agreement"] == k)
             for k in ("agree", "disagree", "deferred")}
    deltas = [r["money_delta_cents"] for r in judged if r.get("money_delta_cents")]
    total = len(judged)
    return {
        "cases": total,
        **count,
        "agreement_rate": round(count["agree"] / total, 4) if total else 0.0,
        "deferred_rate": round(count["deferred"] / total, 4) if total else 0.0,
        "db_changed": sum(1 for r in results if r.get("db_unchanged") is False),
        "money_over_cents": sum(d for d in deltas if d > 0),
        "money_under_cents": -sum(d for d in deltas if d < 0),
        "by_action": {
            action: {"cases": len(rows), "agree": sum(r["agreement"] == "agree" for r in rows)}
            for action in ("refund", "reply", "escalate", "decline")
            if (rows := [r for r in judged if r["human_action"]["action"] == action])
        },
    }
