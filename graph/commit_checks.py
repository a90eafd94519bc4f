"""Verify at commit: the checks execute runs inside the ledger's transaction.

The verify node judges a call when it is proposed; an approval may come hours later, and
other runs (or other processes) may have committed on the same order since. So, for every
mutation (automatic, approved or edited), execute hands `commit_once` these checks, which run
after the write lock is taken and just before the effect, against the database as it is then:

1. the workflow's invariants for the tool, the same functions verify ran;
2. the policy's tier rules again, aggregates included: a call that would now be held (or
   blocked) must not commit under the lighter tier it was gated with, and an approval only
   covers a rule whose approver roles include the approver's.

The first failing check refuses the commit with its rule id; nothing is written. What verify
found earlier stays what the approver saw; this pass is what decides.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from graph.context import RunContext
from graph.nodes.verify import run_invariants
from graph.state import AgentState, RuleCheck
from tools.ledger import Refusal
from verifiers.gate import decide_tier, run_facts
from verifiers.history import ordered

TIER_RANK = {"green": 0, "yellow": 1, "red": 2}
COMMIT_PREFIX = "verify at commit"
"""How a refusal reads in the run's reason, status, explain and traces."""


def tier_at_commit(ctx: RunContext, state: AgentState, tool: str,
                   parsed: BaseModel) -> RuleCheck:
    """The tier rules again, now: fail when they would hold or block what was let through."""
    approval = state.get("approval")
    policy = ctx.policy
    if policy is None:
        return RuleCheck(rule_id="policy.invalid", ok=False,
                         reason=ctx.policy_error or "no policy is loaded")
    spec = ctx.registry.get(tool)
    tool_ctx = ctx.tool_ctx(state["ticket"])
    now = decide_tier(policy, tool, parsed, mutates=spec.mutates if spec else True,
                      usage=state["usage"], tool_ctx=tool_ctx, facts=ctx.workflow.facts,
                      now=ctx.clock(), history=ordered(state["evidence"]),
                      run=run_facts(tool_ctx, ctx.requester, ctx.workflow.name),
                      tools=ctx.registry.names())
    gate = state.get("gate")
    was = gate["tier"] if gate is not None else "red"
    values = now.get("aggregates") or {}
    read = f" ({', '.join(f'{k} = {v}' for k, v in values.items())})" if values else ""
    if TIER_RANK[now["tier"]] > TIER_RANK[was]:
        held = "blocked" if now["tier"] == "red" else "held for approval"
        return RuleCheck(rule_id=now["rule_id"], ok=False,
                         reason=f"the call would now be {held}: {now['reason']}{read}; it was "
                                f"gated {was} by {gate['rule_id'] if gate else 'nothing'}")
    roles = now.get("approver_roles")
    if now["tier"] == "yellow" and roles and approval and approval["role"] not in roles:
        return RuleCheck(rule_id=now["rule_id"], ok=False,
                         reason=f"approved as {approval['role']}, but the rule deciding now "
                                f"needs {', '.join(roles)}: {now['reason']}{read}")
    return RuleCheck(rule_id=now["rule_id"], ok=True,
                     reason=f"the tier is still {now['tier']}{read}")


def commit_checks(ctx: RunContext, state: AgentState, tool: str, parsed: BaseModel,
                  args: dict[str, object], found: list[RuleCheck]) -> Callable[[], Refusal | None]:
    """The check `commit_once` runs inside its transaction; every verdict is appended to
    `found` (the caller records them), the first failure is the refusal."""

    def check() -> Refusal | None:
        found.clear()  # a retried commit checks again from scratch
        found.extend(run_invariants(ctx, state, tool, args))
        try:
            found.append(tier_at_commit(ctx, state, tool, parsed))
        except Exception as exc:  # noqa: BLE001 - a check that cannot decide fails closed
            found.append(RuleCheck(rule_id="policy.tier_at_commit", ok=False,
                                   reason=f"could not be checked: {exc}"))
        failed = next((c for c in found if not c["ok"]), None)
        return (failed["rule_id"], failed["reason"]) if failed else None

    return check
