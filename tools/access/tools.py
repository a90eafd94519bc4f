"""The seven access tools, their scope checks and the registry that exposes them.

Tools never commit: the execute node wraps each mutation and its idempotency record in one
transaction. Whether a grant is allowed is the gate's and the verifier's call; the tools only
refuse what cannot be done at all (an unknown employee, a grant that is not there).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC
from typing import Any

from tools.access import models as m
from tools.access import queries
from tools.base import ToolContext, ToolError, ToolRegistry, ToolSpec
from tools.common import Clock, next_id, scope_check
from tools.common import arg as _arg
from tools.common import utc_now as _utc_now


@scope_check("tenant_id")
def employee_scope(ctx: ToolContext, args: Any) -> str | None:
    """The employee must be in the run's tenant."""
    employee_id = _arg(args, "employee_id")
    if queries.employee(ctx.conn, ctx.tenant_id, employee_id) is None:
        return f"employee {employee_id} is not in tenant {ctx.tenant_id}"
    return None


@scope_check("tenant_id", "ticket_id")
def request_scope(ctx: ToolContext, args: Any) -> str | None:
    """The request must be the run's own request."""
    request_id = _arg(args, "request_id")
    if request_id != ctx.ticket_id:
        return f"request {request_id} is not this run's request {ctx.ticket_id}"
    return None


class AccessTools:
    """Implementations of the access tools; `clock` stamps the rows they write."""

    def __init__(self, clock: Clock = _utc_now) -> None:
        self._clock = clock

    def _now(self) -> str:
        return self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def lookup_employee(self, ctx: ToolContext,
                        args: m.LookupEmployeeInput) -> m.LookupEmployeeOutput:
        row = queries.employee_by_email(ctx.conn, ctx.tenant_id, args.email)
        if row is None:
            raise ToolError(f"no employee with email {args.email}")
        return m.LookupEmployeeOutput(
            employee_id=row["employee_id"], name=row["name"], email=row["email"],
            role=row["role"], team=row["team"], manager_id=row["manager_id"],
            active=bool(row["active"]))

    def list_grants(self, ctx: ToolContext, args: m.ListGrantsInput) -> m.ListGrantsOutput:
        if queries.employee(ctx.conn, ctx.tenant_id, args.employee_id) is None:
            raise ToolError(f"employee {args.employee_id} not found")
        grants = queries.live_grants(ctx.conn, ctx.tenant_id, args.employee_id)
        return m.ListGrantsOutput(employee_id=args.employee_id,
                                  grants=[m.Grant(**g) for g in grants])

    def get_system(self, ctx: ToolContext, args: m.GetSystemInput) -> m.GetSystemOutput:
        row = queries.system(ctx.conn, ctx.tenant_id, args.system_id)
        if row is None:
            raise ToolError(f"system {args.system_id} not found")
        return m.GetSystemOutput(system_id=row["system_id"], name=row["name"],
                                 production=bool(row["production"]),
                                 owner_team=row["owner_team"])

    def grant_access(self, ctx: ToolContext, args: m.GrantAccessInput) -> m.GrantAccessOutput:
        if queries.employee(ctx.conn, ctx.tenant_id, args.employee_id) is None:
            raise ToolError(f"employee {args.employee_id} not found")
        if queries.system(ctx.conn, ctx.tenant_id, args.system_id) is None:
            raise ToolError(f"system {args.system_id} not found")
        grant_id = next_id(ctx.conn, "grants", "grant_id", "GR-")
        try:
            ctx.conn.execute(
                "INSERT INTO grants (grant_id, tenant_id, employee_id, system_id, level,"
                " granted_at, revoked_at, run_id) VALUES (?,?,?,?,?,?,NULL,?)",
                (grant_id, ctx.tenant_id, args.employee_id, args.system_id, args.level,
                 self._now(), ctx.run_id))
        except sqlite3.IntegrityError:
            raise ToolError(f"{args.employee_id} already holds {args.level} on "
                            f"{args.system_id}") from None
        return m.GrantAccessOutput(grant_id=grant_id, employee_id=args.employee_id,
                                   system_id=args.system_id, level=args.level)

    def revoke_access(self, ctx: ToolContext,
                      args: m.RevokeAccessInput) -> m.RevokeAccessOutput:
        live = queries.live_grants(ctx.conn, ctx.tenant_id, args.employee_id,
                                   system_id=args.system_id, level=args.level)
        if not live:
            raise ToolError(f"{args.employee_id} holds no {args.level} grant on "
                            f"{args.system_id}")
        now = self._now()
        ctx.conn.execute("UPDATE grants SET revoked_at = ? WHERE grant_id = ? AND tenant_id = ?",
                         (now, live[0]["grant_id"], ctx.tenant_id))
        return m.RevokeAccessOutput(grant_id=live[0]["grant_id"], revoked_at=now)

    def add_request_note(self, ctx: ToolContext,
                         args: m.AddRequestNoteInput) -> m.AddRequestNoteOutput:
        if queries.request(ctx.conn, ctx.tenant_id, args.request_id) is None:
            raise ToolError(f"request {args.request_id} not found")
        note_id = next_id(ctx.conn, "request_notes", "note_id", "NOTE-")
        ctx.conn.execute(
            "INSERT INTO request_notes (note_id, tenant_id, request_id, body, created_at, run_id)"
            " VALUES (?,?,?,?,?,?)",
            (note_id, ctx.tenant_id, args.request_id, args.body, self._now(), ctx.run_id))
        return m.AddRequestNoteOutput(note_id=note_id, request_id=args.request_id)

    def escalate_to_human(self, ctx: ToolContext,
                          args: m.EscalateToHumanInput) -> m.EscalateToHumanOutput:
        if queries.request(ctx.conn, ctx.tenant_id, args.request_id) is None:
            raise ToolError(f"request {args.request_id} not found")
        escalation_id = next_id(ctx.conn, "escalations", "escalation_id", "ESC-")
        ctx.conn.execute(
            "INSERT INTO escalations (escalation_id, tenant_id, request_id, reason, created_at,"
            " run_id) VALUES (?,?,?,?,?,?)",
            (escalation_id, ctx.tenant_id, args.request_id, args.reason, self._now(),
             ctx.run_id))
        ctx.conn.execute("UPDATE requests SET status = 'escalated' WHERE tenant_id = ? AND"
                         " request_id = ?", (ctx.tenant_id, args.request_id))
        return m.EscalateToHumanOutput(escalation_id=escalation_id, request_id=args.request_id)


def access_specs(clock: Clock = _utc_now) -> list[ToolSpec]:
    """The contracts of the seven access tools."""
    t = AccessTools(clock)
    return [
        ToolSpec("lookup_employee", "Find the employee with this email: role, team, manager.",
                 m.LookupEmployeeInput, m.LookupEmployeeOutput, mutates=False, risk="read",
                 run=t.lookup_employee),
        ToolSpec("list_grants", "List the access an employee holds now (system and level).",
                 m.ListGrantsInput, m.ListGrantsOutput, mutates=False, risk="read",
                 run=t.list_grants, scope=employee_scope),
        ToolSpec("get_system", "Get one internal system: name, owner, whether it is production.",
                 m.GetSystemInput, m.GetSystemOutput, mutates=False, risk="read",
                 run=t.get_system),
        ToolSpec("grant_access", "Grant an employee read, write or admin access to a system.",
                 m.GrantAccessInput, m.GrantAccessOutput, mutates=True, risk="write",
                 run=t.grant_access, scope=employee_scope),
        ToolSpec("revoke_access", "Revoke an employee's read, write or admin access to a "
                 "system.", m.RevokeAccessInput, m.RevokeAccessOutput, mutates=True,
                 risk="write", run=t.revoke_access, scope=employee_scope),
        ToolSpec("add_request_note", "Answer on the access request with a note.",
                 m.AddRequestNoteInput, m.AddRequestNoteOutput, mutates=True, risk="write",
                 run=t.add_request_note, scope=request_scope),
        ToolSpec("escalate_to_human", "Hand the request to a human with a reason.",
                 m.EscalateToHumanInput, m.EscalateToHumanOutput, mutates=True,
                 risk="handoff", run=t.escalate_to_human, scope=request_scope),
    ]


def access_registry(faults: Any = None, clock: Clock = _utc_now) -> ToolRegistry:
    """A new registry with the access tools; `faults` (a FaultPlan) is applied when given."""
    specs = access_specs(clock)
    if faults is not None:
        specs = [faults.apply(spec) for spec in specs]
    return ToolRegistry(specs)
