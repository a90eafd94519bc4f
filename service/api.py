"""The REST API under /api/v1: runs (start, list, status, decide, timeline), traces, the report,
the audit log and the kill switch. Every route needs a bearer token (`current_principal`)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from checkpoints.accounts import Principal
from graph.control import clear_kill, explain_lines, kill_scope, scope_name, set_kill
from observability.audit import Head, audit_head, verify_audit
from observability.report import compute_report
from observability.search import search_traces
from service.core import RunView, Service, decide_run, is_operator, run_view, start_run, visible_run
from service.errors import BadRequest, Forbidden, Unauthorized

bearer = HTTPBearer(auto_error=False, description="A token from `signoff tokens create`.")


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def current_principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """The principal of the request's bearer token; 401 when missing, expired or revoked."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required (Authorization: Bearer so_...)")
    service = service_of(request)
    with service.lock:
        return service.accounts.authenticate(credentials.credentials)


def operator(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not is_operator(principal):
        raise Forbidden(f"{principal.email} is not an operator (a grant of role operator for "
                        "tenant '*')")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
OperatorDep = Annotated[Principal, Depends(operator)]
ServiceDep = Annotated[Service, Depends(service_of)]

Text = Annotated[str, Field(max_length=20_000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRun(Strict):
    """Start a run: a sample ticket by id, or ticket text from a customer's email."""

    workflow: Name = "support"
    ticket_id: Name | None = None
    text: Text | None = None
    email: Name | None = None
    tenant: Name | None = None
    subject: Annotated[str, Field(max_length=200)] = "Support request"


class DecisionRequest(Strict):
    """A decision on the held call the run's status showed (`held.digest`). Who decides is the
    token's holder; the body cannot say."""

    action: Literal["approve", "reject", "edit"]
    held_digest: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(max_length=2000)] = ""
    args: dict[str, Any] | None = None


class KillRequest(Strict):
    workflow: Name | None = None
    all: bool = False
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "stopped by an operator"


class UnkillRequest(Strict):
    workflow: Name | None = None
    all: bool = False


class RunList(BaseModel):
    runs: list[RunView]


class Timeline(BaseModel):
    run_id: str
    lines: list[str]
    """`signoff policy explain` for the run, line by line."""


class TraceList(BaseModel):
    runs: list[dict[str, Any]]


class AuditStatus(BaseModel):
    ok: bool
    entries_checked: int
    first_bad_seq: int | None
    reason: str | None


class AuditHead(BaseModel):
    head: str
    """SEQ:HASH; keep it where the log's writers cannot write."""


class KillSwitches(BaseModel):
    kill_switches: list[dict[str, Any]]


class Message(BaseModel):
    message: str


class Me(BaseModel):
    email: str
    grants: list[tuple[str, str]]


class ErrorBody(BaseModel):
    error: str
    """What went wrong, in one line."""


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in ((400, "Bad input"), (401, "Missing, expired or revoked token"),
                       (403, "The token's holder may not do this"),
                       (404, "No such run (or another tenant's)"),
                       (409, "The run no longer holds that call, or is busy"),
                       (422, "The request or decision is invalid"))}

router = APIRouter(prefix="/api/v1", responses=_ERRORS)


@router.get("/me", response_model=Me, tags=["accounts"])
def me(principal: PrincipalDep) -> Me:
    """Who the token belongs to and the (role, tenant) grants it carries."""
    return Me(email=principal.email, grants=list(principal.grants))


@router.post("/runs", response_model=RunView, status_code=201, tags=["runs"])
def start(body: StartRun, principal: PrincipalDep, service: ServiceDep) -> RunView:
    """Start a run (the token's holder is its requester) and drive it until it ends or waits
    for a human."""
    with service.lock:
        record = start_run(service, principal, workflow=body.workflow, ticket_id=body.ticket_id,
                           text=body.text, email=body.email, tenant_id=body.tenant,
                           subject=body.subject)
        return run_view(service, principal, record, detail=True)


@router.get("/runs", response_model=RunList, tags=["runs"])
def list_runs(principal: PrincipalDep, service: ServiceDep,
              status: Annotated[str | None, Query(max_length=40)] = None,
              ticket_id: Annotated[str | None, Query(max_length=200)] = None,
              workflow: Annotated[str | None, Query(max_length=200)] = None,
              pending_for_me: bool = False,
              limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> RunList:
    """Runs of the principal's tenants, newest first; `pending_for_me` keeps the held calls
    this principal may decide."""
    with service.lock:
        records = service.runner.runs.list(
            status="waiting_approval" if pending_for_me else status, limit=limit,
            tenants=list(principal.tenants), ticket_id=ticket_id, workflow=workflow)
        views = [run_view(service, principal, r) for r in records]
    return RunList(runs=[v for v in views if v.can_decide or not pending_for_me])


@router.get("/runs/{run_id}", response_model=RunView, tags=["runs"])
def run_status(run_id: str, principal: PrincipalDep, service: ServiceDep) -> RunView:
    """Where a run stands: its status, the held call and its digest, what it spent."""
    with service.lock:
        return run_view(service, principal, visible_run(service, principal, run_id),
                        detail=True)


@router.post("/runs/{run_id}/decision", response_model=RunView, tags=["runs"])
def decide(run_id: str, body: DecisionRequest, principal: PrincipalDep,
           service: ServiceDep) -> RunView:
    """Approve, edit or reject the held call named by `held_digest`: 409 when the run no
    longer holds it, 403 when the token's holder may not decide it."""
    with service.lock:
        record = decide_run(service, principal, run_id, action=body.action, reason=body.reason,
                            args=body.args, held=body.held_digest)
        return run_view(service, principal, record, detail=True)


@router.get("/runs/{run_id}/timeline", response_model=Timeline, tags=["runs"])
def timeline(run_id: str, principal: PrincipalDep, service: ServiceDep) -> Timeline:
    """Which rule decided each proposal and why (`signoff policy explain`)."""
    with service.lock:
        visible_run(service, principal, run_id)
        return Timeline(run_id=run_id, lines=explain_lines(service.runner, run_id))


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO date or datetime, e.g. 2025-01-31T09:00"
                         ) from None
    return parsed if parsed.tzinfo else parsed.astimezone()


@router.get("/traces", response_model=TraceList, tags=["observability"])
def traces(principal: PrincipalDep, service: ServiceDep,
           run_id: Annotated[str | None, Query(max_length=200)] = None,
           customer_id: Annotated[str | None, Query(max_length=200)] = None,
           tool: Annotated[str | None, Query(max_length=200)] = None,
           outcome: Annotated[str | None, Query(max_length=40)] = None,
           text: Annotated[str | None, Query(max_length=500)] = None,
           since: Annotated[str | None, Query(max_length=40)] = None,
           until: Annotated[str | None, Query(max_length=40)] = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> TraceList:
    """Search recorded runs of the principal's tenants (`signoff traces`)."""
    tenants = None if "*" in principal.tenants else list(principal.tenants)
    with service.lock:
        rows = search_traces(service.runner.backend, run_id=run_id, customer_id=customer_id,
                             tool=tool, outcome=outcome, text=text,
                             since=_time("since", since), until=_time("until", until),
                             limit=limit, tenant_ids=tenants)
    return TraceList(runs=rows)


@router.get("/report", tags=["observability"])
def report(principal: OperatorDep, service: ServiceDep) -> dict[str, Any]:
    """Success rate, escalation reasons, latency, tool-call quality and cost (operators)."""
    with service.lock:
        return dataclasses.asdict(compute_report(service.runner.backend))


@router.get("/audit/verify", response_model=AuditStatus, tags=["audit"])
def audit_verify(principal: OperatorDep, service: ServiceDep,
                 head: Annotated[str | None, Query(max_length=200)] = None) -> AuditStatus:
    """Walk the audit log's hash chain; with `head` (SEQ:HASH), also check that entry."""
    try:
        pinned = Head.parse(head) if head is not None else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    with service.lock:
        result = verify_audit(service.runner.backend, pinned)
    return AuditStatus(ok=result.ok, entries_checked=result.entries_checked,
                       first_bad_seq=result.first_bad_seq, reason=result.reason)


@router.get("/audit/head", response_model=AuditHead, tags=["audit"])
def audit_head_route(principal: OperatorDep, service: ServiceDep) -> AuditHead:
    """The newest audit entry as SEQ:HASH."""
    with service.lock:
        return AuditHead(head=str(audit_head(service.runner.backend)))


@router.get("/kill", response_model=KillSwitches, tags=["kill switch"])
def kill_switches(principal: OperatorDep, service: ServiceDep) -> KillSwitches:
    with service.lock:
        return KillSwitches(kill_switches=service.runner.runs.kill_switches())


@router.post("/kill", response_model=Message, tags=["kill switch"])
def kill(body: KillRequest, principal: OperatorDep, service: ServiceDep) -> Message:
    """Set a kill switch for one workflow or all: runs stop at their next gate."""
    with service.lock:
        scope = kill_scope(body.workflow, body.all)
        set_kill(service.runner, scope, by=principal.email, reason=body.reason)
    return Message(message=f"kill switch set for {scope_name(scope)}: {body.reason}")


@router.post("/unkill", response_model=Message, tags=["kill switch"])
def unkill(body: UnkillRequest, principal: OperatorDep, service: ServiceDep) -> Message:
    with service.lock:
        scope = kill_scope(body.workflow, body.all)
        clear_kill(service.runner, scope)
    return Message(message=f"kill switch cleared for {scope_name(scope)}")
