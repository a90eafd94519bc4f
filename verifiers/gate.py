"""The policy gate: a deterministic, fail-closed decision for one proposed tool call.

The checks run in a fixed order and the first failure decides: kill switch, policy present,
tool known, tool allowed, arguments valid, arguments inside the run's tenant and customer,
budgets, then the policy's tier rules. Every decision carries a rule id and a reason.
`evaluate_gate` never raises: an error while deciding blocks the call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ValidationError

from tools.base import ToolContext, ToolRegistry, validation_summary
from verifiers.aggregates import AggregateValues
from verifiers.expr import ExprError
from verifiers.history import history_facts
from verifiers.policy import AGGREGATES, HISTORY, RUN, Policy, Tier

GateRoute = Literal["execute", "verify", "block"]
FactsFn = Callable[[ToolContext, str, BaseModel], Mapping[str, Any]]


class Usage(TypedDict):
    """What a run has spent so far."""

    model_calls: int
    tokens: int
    tool_calls: int
    retries: int
    cost_usd: float
    unpriced_calls: NotRequired[int]
    """Model calls to a model the price table does not know: their cost is unknown."""


class GateDecision(TypedDict):
    """The gate's verdict on one proposal; stored with the run."""

    route: GateRoute
    tier: Tier
    rule_id: str
    reason: str
    policy_version: str
    policy_digest: NotRequired[str]
    call_digest: NotRequired[str]
    """Which call (tool and arguments) this decision is about; see tools.ledger.call_digest."""
    errors: NotRequired[list[str]]
    approver_roles: NotRequired[list[str]]
    """For a held (yellow) call: the roles that may approve it; absent means any role."""
    aggregates: NotRequired[dict[str, int]]
    """The policy aggregates the tier rules read while deciding, by name."""
    on_block: NotRequired[str]
    """"replan" when the blocking rule hands the refusal to the planner instead of ending."""


@dataclass(frozen=True)
class GateRequest:
    """Everything the gate looks at; nothing else influences the decision."""

    tool: str
    args: dict[str, Any] | None
    """None when the model's arguments were not valid JSON."""
    usage: Usage
    elapsed_seconds: float
    kill_reason: str | None
    """Set when a kill switch covers this run's workflow."""
    policy: Policy | None
    policy_error: str | None
    registry: ToolRegistry
    tool_ctx: ToolContext
    facts: FactsFn | None = None
    """Workflow-provided facts for rule conditions (e.g. the customer's flags)."""
    now: float | None = None
    """The time aggregate windows end at (the run's clock); None: the wall clock."""
    history: Sequence[Mapping[str, Any]] = ()
    """The run's earlier calls, oldest first (the `history` namespace)."""
    run: Mapping[str, Any] | None = None
    """The run's own facts (the `run` namespace: tenant, customer, ticket, requester)."""


def _block(rule_id: str, reason: str, version: str,
           errors: list[str] | None = None) -> GateDecision:
    decision = GateDecision(route="block", tier="red", rule_id=rule_id, reason=reason,
                            policy_version=version)
    if errors:
        decision["errors"] = errors
    return decision


def _budget_breach(policy: Policy, usage: Usage, elapsed: float) -> tuple[str, str] | None:
    b = policy.budgets
    checks = [
        ("budget.model_calls", usage["model_calls"] > b.model_calls,
         f"model calls {usage['model_calls']} exceed the budget of {b.model_calls}"),
        ("budget.tokens", usage["tokens"] > b.tokens,
         f"tokens {usage['tokens']} exceed the budget of {b.tokens}"),
        ("budget.tool_calls", usage["tool_calls"] + 1 > b.tool_calls,
         f"tool call {usage['tool_calls'] + 1} would exceed the budget of {b.tool_calls}"),
        ("budget.retries", usage["retries"] > b.retries,
         f"retries {usage['retries']} exceed the budget of {b.retries}"),
        ("budget.wall_seconds", elapsed > b.wall_seconds,
         f"run time {elapsed:.0f}s exceeds the budget of {b.wall_seconds:.0f}s"),
        # Fail closed: with a call of unknown cost the spend cannot be checked.
        ("budget.money", usage.get("unpriced_calls", 0) > 0,
         f"{usage.get('unpriced_calls', 0)} model call(s) to a model with no price, so the "
         "money budget cannot be checked (give the model a price in SIGNOFF_PRICES, even 0)"),
        ("budget.money", usage["cost_usd"] > b.money_usd,
         f"model spend ${usage['cost_usd']:.4f} exceeds the budget of ${b.money_usd:.2f}"),
    ]
    for rule_id, breached, reason in checks:
        if breached:
            return rule_id, reason
    return None


def evaluate_gate(req: GateRequest) -> GateDecision:
    """Decide one proposed call. Never raises; any error blocks."""
    version = req.policy.version if req.policy else "none"
    try:
        decision = _evaluate(req, version)
    except Exception as exc:  # noqa: BLE001 - fail closed on anything unexpected
        decision = _block("gate.error", f"the gate could not decide: {exc}", version)
    if req.policy is not None:
        decision["policy_digest"] = req.policy.digest
    return decision


def _evaluate(req: GateRequest, version: str) -> GateDecision:
    if req.kill_reason:
        return _block("kill_switch", req.kill_reason, version)
    if req.policy is None:
        return _block("policy.invalid", req.policy_error or "no policy is loaded", version)
    policy = req.policy
    spec = req.registry.get(req.tool)
    if spec is None:
        return _block("tool.unknown", f"unknown tool {req.tool!r}", version)
    if req.tool not in policy.allowed_tools:
        return _block("tool.not_allowed", f"tool {req.tool!r} is not in the policy's allowlist",
                      version)
    if req.args is None:
        return _block("args.not_json", f"arguments for {req.tool} are not valid JSON", version)
    try:
        parsed = spec.parse_args(req.args)
    except ValidationError as exc:
        summary = validation_summary(exc)
        return _block("args.schema", f"arguments for {req.tool} fail its schema: {summary}",
                      version, errors=summary.split("; "))
    if spec.scope is not None:
        out_of_scope = spec.scope(req.tool_ctx, parsed)
        if out_of_scope:
            return _block("scope", out_of_scope, version)
    breach = _budget_breach(policy, req.usage, req.elapsed_seconds)
    if breach:
        return _block(*breach, version)

    return decide_tier(policy, req.tool, parsed, mutates=spec.mutates, usage=req.usage,
                       tool_ctx=req.tool_ctx, facts=req.facts,
                       now=time.time() if req.now is None else req.now,
                       history=req.history, run=req.run, tools=req.registry.names())


def run_facts(tool_ctx: ToolContext, requester: str | None, workflow: str | None
              ) -> dict[str, Any]:
    """The `run` namespace: only what the run knows; a key it does not know is absent, so a
    scope condition reading it cannot be decided and blocks (never None == None)."""
    found = {"tenant_id": tool_ctx.tenant_id, "customer_id": tool_ctx.customer_id,
             "ticket_id": tool_ctx.ticket_id, "requester": requester, "workflow": workflow}
    return {k: v for k, v in found.items() if v}


def decide_tier(policy: Policy, tool: str, parsed: BaseModel, *, mutates: bool, usage: Usage,
                tool_ctx: ToolContext, facts: FactsFn | None, now: float,
                history: Sequence[Mapping[str, Any]] = (), run: Mapping[str, Any] | None = None,
                tools: Sequence[str] = ()) -> GateDecision:
    """The policy's scope rules, then its tier rules in file order, over the call and the
    facts as `tool_ctx`'s connection sees them now; the first matching rule decides, none
    matching blocks. Used by the gate and again inside the commit transaction
    (graph.commit_checks)."""
    version = policy.version
    found = dict(facts(tool_ctx, tool, parsed)) if facts else {}
    args = parsed.model_dump()
    aggregates = AggregateValues(policy.aggregates, tool_ctx.conn, tenant_id=tool_ctx.tenant_id,
                                 customer_id=tool_ctx.customer_id, args=args, now=now)
    names: dict[str, Any] = {"customer": {}, "ticket": {}, **found}
    names.update({"args": args, "usage": dict(usage), "tool": tool, AGGREGATES: aggregates,
                  HISTORY: history_facts(history, {*tools, *policy.allowed_tools}),
                  RUN: dict(run) if run is not None else run_facts(tool_ctx, None, None)})
    decision = _scopes(policy, tool, names) or _first_rule(policy, tool, names, mutates,
                                                           version)
    if aggregates.read:
        decision["aggregates"] = dict(aggregates.read)
    return decision


def _scopes(policy: Policy, tool: str, names: Mapping[str, Any]) -> GateDecision | None:
    """The first `[[scope]]` rule for `tool` whose requirement does not hold (or cannot be
    decided), as a block; None when every one holds."""
    for scope in policy.scopes:
        if not scope.applies_to(tool):
            continue
        try:
            held = scope.condition.evaluate(names)
        except ExprError as exc:
            return _block(scope.id, f"{scope.reason} (could not be decided: {exc})",
                          policy.version)
        if not held:
            return _block(scope.id, f"{scope.reason} ({scope.condition.source} is false)",
                          policy.version)
    return None


def _first_rule(policy: Policy, tool: str, names: Mapping[str, Any], mutates: bool,
                version: str) -> GateDecision:
    for rule in policy.rules:
        if not rule.applies_to(tool):
            continue
        try:
            matched = rule.condition.evaluate(names) if rule.condition else True
        except ExprError as exc:
            return _block(rule.id, f"rule {rule.id} could not be evaluated: {exc}", version)
        if not matched:
            continue
        if rule.tier == "red":
            blocked = GateDecision(route="block", tier="red", rule_id=rule.id,
                                   reason=rule.reason, policy_version=version)
            if rule.on_block == "replan":
                blocked["on_block"] = "replan"
            return blocked
        route: GateRoute = "execute" if rule.tier == "green" and not mutates else "verify"
        decision = GateDecision(route=route, tier=rule.tier, rule_id=rule.id, reason=rule.reason,
                                policy_version=version)
        if rule.tier == "yellow" and rule.approver_roles:
            decision["approver_roles"] = list(rule.approver_roles)
        return decision
    return _block("policy.no_rule", f"no policy rule covers {tool}", version)
