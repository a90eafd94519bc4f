"""What the API and the inbox both do, over one runner: who may see and decide a run, the
view of a run, starting one and deciding one. Routes and pages only translate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from checkpoints.accounts import AccountStore, Principal
from checkpoints.backend import require_upgraded
from checkpoints.runs import RunRecord
from graph.approvals import check_decision, held_digest
from graph.errors import BadDecision, RunNotFound
from graph.identity import same_identity
from graph.runner import Home, Runner
from graph.workflows import get_workflow, load_workflow_specs
from service.errors import Forbidden

OPERATOR_ROLE = "operator"
"""A grant of this role for every tenant ("*") lets a user read the report and the audit log
and set or clear kill switches; decisions still need a role the held rule accepts."""


@dataclass(frozen=True)
class ServiceSettings:
    """How `create_app` builds the service; tests pass their own runner and clock."""

    home: Home
    """The data directory, shared with the CLI (SIGNOFF_HOME)."""
    make_runner: Callable[[Home], Runner] = field(default=lambda home: Runner(home))
    """Builds the one runner the service drives runs with (models, recorder, prices)."""
    clock: Callable[[], float] = time.time
    secure_cookies: bool = False
    """Mark the inbox's session cookie Secure (set it when TLS terminates in front)."""
    workflows: str = ""
    """Plugin workflows to load at start-up, as `module:attribute[,module:attribute]` (the
    edge reads SIGNOFF_WORKFLOWS); a bad entry stops the start with a one-line error."""


class Service:
    """The runner and the accounts store of one app, both on the runner's backend: the one
    backend (SQLite files, or one PostgreSQL pool) every request uses, closed at shutdown.
    Its connections are shared, so every use goes through `lock` (one request at a time
    touches the stores)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        load_workflow_specs(settings.workflows)
        self.runner = settings.make_runner(settings.home)
        try:
            # Every store, not only the run registry the runner opened: a schema left behind
            # must stop the start, not the first request that reaches it.
            require_upgraded(self.runner.backend)
            self.accounts = AccountStore.open(self.runner.backend, clock=settings.clock)
        except BaseException:
            self.runner.close()
            raise
        self.lock = threading.RLock()

    def close(self) -> None:
        self.accounts.close()
        self.runner.close()


class Held(BaseModel):
    """The call a run waits on, with why it was held and what the verifier found."""

    digest: str
    tool: str
    args: dict[str, Any]
    call_id: str
    origin: str
    tier: str | None
    rule_id: str | None
    reason: str | None
    approver_roles: list[str]
    verdict: dict[str, Any] | None


class RunView(BaseModel):
    """A run as a principal sees it."""

    run_id: str
    workflow: str
    workflow_version: str
    tenant_id: str
    ticket_id: str | None
    customer_id: str | None
    subject: str | None
    body: str | None
    requester: str
    status: str
    reason: str | None
    created_at: float
    updated_at: float
    held: Held | None
    can_decide: bool
    """True when this principal may approve, edit or reject the held call."""
    cannot_decide_because: str | None
    usage: dict[str, Any] | None = None
    """What the run has spent (model calls, tokens, cost, tool calls); in a run's own view."""
    evidence: list[dict[str, Any]] | None = None
    """The reads the run made (tool, arguments, result); in a run's own view."""


def visible_run(service: Service, principal: Principal, run_id: str) -> RunRecord:
    """The run, when the principal may see its tenant; otherwise "no run" (404), so another
    tenant's run does not show that it exists."""
    record = service.runner.runs.get(run_id)
    if not principal.sees(record.tenant_id):
        raise RunNotFound(f"no run with id {run_id!r}")
    return record


def decision_refusal(service: Service, principal: Principal, record: RunRecord) -> str | None:
    """Why this principal may not decide the run's held call, or None when they may. The
    same check the approve node makes, on the principal's roles."""
    if record.status != "waiting_approval":
        return f"the run is not waiting for a decision (status: {record.status})"
    if same_identity(principal.email, record.requester):
        return f"{principal.email} started this run and cannot decide on it"
    policy, error = service.runner.load_policy(get_workflow(record.workflow))
    if policy is None:
        return f"no valid policy is loaded: {error}"
    gate = (record.pending or {}).get("gate") or {}
    try:
        check_decision({"action": "approve", "by": principal.email,
                        "roles": principal.roles_for(record.tenant_id)},
                       requester=record.requester, policy=policy, tenant_id=record.tenant_id,
                       requester_role=record.requester_role,
                       required_roles=gate.get("approver_roles"),
                       customer=((record.inputs or {}).get("ticket") or {})
                       .get("customer_email"))
    except BadDecision as exc:
        return str(exc)
    return None


def held_of(record: RunRecord) -> Held | None:
    pending = record.pending
    if record.status != "waiting_approval" or not pending:
        return None
    proposal = pending.get("proposal") or {}
    gate = pending.get("gate") or {}
    return Held(digest=held_digest(pending), tool=proposal.get("tool", ""),
                args=proposal.get("args") or {}, call_id=proposal.get("call_id", ""),
                origin=proposal.get("origin", ""), tier=gate.get("tier"),
                rule_id=gate.get("rule_id"), reason=gate.get("reason"),
                approver_roles=list(gate.get("approver_roles") or []),
                verdict=pending.get("verdict"))


def run_view(service: Service, principal: Principal, record: RunRecord, *,
             detail: bool = False) -> RunView:
    ticket = (record.inputs or {}).get("ticket") or {}
    refusal = decision_refusal(service, principal, record)
    view = RunView(run_id=record.run_id, workflow=record.workflow,
                   workflow_version=record.workflow_version, tenant_id=record.tenant_id,
                   ticket_id=record.ticket_id, customer_id=record.customer_id,
                   subject=ticket.get("subject"), body=ticket.get("body"),
                   requester=record.requester, status=record.status, reason=record.reason,
                   created_at=record.created_at, updated_at=record.updated_at,
                   held=held_of(record), can_decide=refusal is None,
                   cannot_decide_because=refusal)
    if detail:
        state = service.runner.state(record.run_id)
        view.usage = dict(state["usage"]) if state.get("usage") else None
        view.evidence = [dict(item) for item in (state.get("evidence") or {}).values()]
    return view


def start_run(service: Service, principal: Principal, *, workflow: str,
              ticket_id: str | None, text: str | None, email: str | None,
              tenant_id: str | None, subject: str) -> RunRecord:
    """Start a run for the principal (its requester) on a sample ticket or on ticket text."""
    runner = service.runner
    wf = get_workflow(workflow)
    runner.ensure_domain_db(wf)
    if text is not None:
        tenants = [t for t in principal.tenants if t != "*"]
        tenant_id = tenant_id or (tenants[0] if len(tenants) == 1 else None)
        if tenant_id is None:
            raise Forbidden("name the tenant the ticket belongs to")
        if not principal.sees(tenant_id):
            raise Forbidden(f"{principal.email} holds no role in tenant {tenant_id}")
    ticket = runner.ticket(wf.name, ticket_id, text=text, email=email,
                           tenant_id=tenant_id or "acme", subject=subject)
    if not principal.sees(ticket.tenant_id):
        raise Forbidden(f"{principal.email} holds no role in tenant {ticket.tenant_id}")
    result = runner.start(wf.name, ticket, requester=principal.email)
    return runner.runs.get(result.run_id)


def decide_run(service: Service, principal: Principal, run_id: str, *, action: str,
               reason: str, args: dict[str, Any] | None, held: str) -> RunRecord:
    """Apply the principal's decision to the call `held` names. Forbidden when they may not
    decide it; StaleDecision (409) when the run no longer holds that call."""
    record = visible_run(service, principal, run_id)
    if record.status == "waiting_approval":
        refusal = decision_refusal(service, principal, record)
        if refusal is not None:
            raise Forbidden(refusal)
    payload: dict[str, Any] = {"action": action, "by": principal.email, "reason": reason,
                               "roles": principal.roles_for(record.tenant_id)}
    if args is not None:
        payload["args"] = args
    service.runner.decide(run_id, payload, held=held)
    return service.runner.runs.get(run_id)


def tool_fields(service: Service, record: RunRecord) -> list[dict[str, Any]]:
    """The held tool's arguments as form fields (name, JSON-schema type, bounds, value)."""
    held = held_of(record)
    if held is None:
        return []
    spec = get_workflow(record.workflow).tools().get(held.tool)
    if spec is None:
        return []
    schema = spec.input_model.model_json_schema()
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type") or next((p.get("type") for p in prop.get("anyOf", [])
                                         if p.get("type") != "null"), "string")
        fields.append({"name": name, "type": kind, "required": name in required,
                       "minimum": prop.get("minimum", prop.get("exclusiveMinimum")),
                       "maximum": prop.get("maximum"), "max_length": prop.get("maxLength"),
                       "description": prop.get("description", ""),
                       "value": held.args.get(name, "")})
    return fields


def is_operator(principal: Principal) -> bool:
    return (OPERATOR_ROLE, "*") in principal.grants
