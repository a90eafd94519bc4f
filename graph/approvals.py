"""Human decisions on held actions: their schema and the checks every decision must pass.

The runner checks a decision before resuming a run (so a bad one changes nothing) and the
approve node checks it again against the policy in force when it is used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graph.errors import BadDecision
from graph.identity import BadIdentity, normalize_identity, same_identity
from graph.text import unreadable_text
from tools.base import validation_summary
from verifiers.policy import CUSTOMER_APPROVER, Policy


class Decision(BaseModel):
    """What a human sends to a waiting run."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["approve", "reject", "edit", "confirm"]
    """"confirm": the run's own customer agrees to a call a rule holds for them."""
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=2000)
    args: dict[str, Any] | None = None
    roles: list[str] | None = None
    """The approver roles an authenticated principal holds for the run's tenant, set by the
    service from the bearer token or session (never from a request body). When present they
    stand in for the policy's approver lists; the local CLI (trusted-local) leaves it unset."""

    @model_validator(mode="after")
    def _shape(self) -> Decision:
        if self.action == "edit" and self.args is None:
            raise ValueError("an edit needs args")
        if self.action != "edit" and self.args is not None:
            raise ValueError("only an edit carries args")
        if self.action == "reject" and not self.reason.strip():
            raise ValueError("a rejection needs a reason")
        problem = unreadable_text(self.reason)
        if problem:
            raise ValueError(f"the reason {problem}")
        for name, value in _strings(self.args or {}):
            problem = unreadable_text(value)
            if problem:
                raise ValueError(f"argument {name} {problem}")
        return self


def held_digest(pending: dict[str, Any] | None) -> str:
    """A fingerprint of the call a run is held on (tool, arguments, call id, origin and the
    rule and policy that held it): a decision names it, so it cannot land on another call."""
    pending = pending or {}
    gate = pending.get("gate") or {}
    held = {"proposal": pending.get("proposal"), "rule_id": gate.get("rule_id"),
            "policy_digest": gate.get("policy_digest")}
    text = json.dumps(held, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string inside an edit's arguments (keys included), with where it is."""
    if isinstance(value, str):
        return [(path or "value", value)]
    if isinstance(value, dict):
        return [pair for key, item in value.items()
                for pair in [(f"{path}.{key}".lstrip("."), str(key)),
                             *_strings(item, f"{path}.{key}".lstrip("."))]]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _strings(item, f"{path}[{i}]")]
    return []


def check_decision(payload: Any, *, requester: str, policy: Policy | None, tenant_id: str,
                   requester_role: str | None = None,
                   required_roles: Sequence[str] | None = None,
                   customer: str | None = None) -> tuple[Decision, str]:
    """Validate a decision and the approver's right to make it; returns (decision, role).

    When the policy asks for `distinct_from_requester_role`, the approver must act in a role
    other than `requester_role`, and a run whose requester's role is unknown cannot be
    approved (fail closed). `required_roles` (from the gate rule that held the call) narrows
    who may decide to members of those roles; approver lists are per tenant, so only those
    listed for `tenant_id` (or for every tenant) may decide. The returned decision carries the
    approver's normalised identity. A rule whose approvers name "customer" holds the call
    for the run's own customer (`customer`, from the run, never from the decision): only that
    identity may confirm (or reject) it, in the role "customer". Raises BadDecision with a
    one-line reason.
    """
    try:
        decision = Decision.model_validate(payload)
    except ValidationError as exc:
        raise BadDecision(f"invalid decision: {validation_summary(exc)}") from None
    if policy is None:
        raise BadDecision("no valid policy is loaded, so no decision can be accepted")
    try:
        decision = decision.model_copy(update={"by": normalize_identity(decision.by)})
        if same_identity(decision.by, requester):
            raise BadDecision(f"{decision.by} started this run and cannot decide on it")
        by_customer = customer is not None and same_identity(decision.by, customer)
        if decision.roles is not None:
            # Authenticated: the principal's roles, limited to roles this policy defines.
            roles = [role for role in policy.approvers if role in decision.roles]
        else:
            roles = policy.roles_of(decision.by, tenant_id)
    except BadIdentity as exc:
        raise BadDecision(f"invalid approver: {exc}") from None
    asks_customer = CUSTOMER_APPROVER in (required_roles or ())
    if decision.action == "confirm" or (by_customer and asks_customer):
        if not asks_customer:
            raise BadDecision("this action does not wait for the customer's confirmation; "
                              "an approver decides it")
        if customer is None:
            raise BadDecision("the run has no customer who could confirm")
        if not by_customer:
            raise BadDecision(f"{decision.by} is not this run's customer; only they can "
                              "confirm this action")
        if decision.action not in ("confirm", "reject"):
            raise BadDecision("the customer confirms or rejects; edits are an approver's")
        return decision, CUSTOMER_APPROVER
    if not roles:
        allowed = ", ".join(sorted(policy.approvers))
        raise BadDecision(f"{decision.by} is not an approver in policy {policy.version} for "
                          f"tenant {tenant_id}'s runs (roles: {allowed})")
    if required_roles:
        roles = [role for role in roles if role in required_roles]
        if not roles:
            raise BadDecision(f"{decision.by} does not hold a role that may decide on this "
                              f"action (needs: {', '.join(required_roles)})")
    if policy.distinct_from_requester_role:
        if not requester_role:
            raise BadDecision("the requester's role is unknown, so no approver can be shown to "
                              "hold a different role")
        roles = [role for role in roles if role != requester_role]
        if not roles:
            raise BadDecision(f"{decision.by} holds the requester's role {requester_role!r}; "
                              "an approver from another role must decide")
    return decision, roles[0]
