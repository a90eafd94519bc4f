"""The access workflow's verifiers: rule invariants, post-conditions, gate facts, the
requester's role, and the offline second-model argument checker."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel

from graph.context import SampleTicket
from graph.models import EVIDENCE_MARK, PROPOSAL_MARK, TICKET_MARK, ScriptedChatModel, extract_block
from tools.access import queries
from tools.base import ToolContext
from tools.common import run_scope_missing
from verifiers.argument_check import Read, scripted_verdict
from verifiers.rules import Check, rule

SYSTEM_ID = re.compile(r"\b[a-z][a-z0-9]*(?:-[a-z0-9]+)+\b")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
LEVEL = re.compile(r"\b(read|write|admin)\b", re.I)


# Invariants: checked before a mutation commits -------------------------------------------

@rule("access.employee_exists")
def employee_exists(ctx: ToolContext, tool: str, args: dict[str, Any]) -> Check:
    row = queries.employee(ctx.conn, ctx.tenant_id, args["employee_id"])
    if row is None:
        return False, f"employee {args['employee_id']} does not exist"
    if tool == "grant_access" and not row["active"]:
        return False, f"employee {args['employee_id']} has left; nothing may be granted"
    return True, f"employee {args['employee_id']} is {row['name']} ({row['role']})"


@rule("access.system_exists")
def system_exists(ctx: ToolContext, tool: str, args: dict[str, Any]) -> Check:
    if queries.system(ctx.conn, ctx.tenant_id, args["system_id"]) is None:
        return False, f"system {args['system_id']} does not exist"
    return True, f"system {args['system_id']} exists"


@rule("access.no_duplicate_grant")
def no_duplicate_grant(ctx: ToolContext, tool: str, args: dict[str, Any]) -> Check:
    held = queries.live_grants(ctx.conn, ctx.tenant_id, args["employee_id"],
                               system_id=args["system_id"], level=args["level"])
    if held:
        return False, (f"{args['employee_id']} already holds {args['level']} on "
                       f"{args['system_id']} ({held[0]['grant_id']})")
    return True, f"no live {args['level']} grant on {args['system_id']} yet"


@rule("access.revoke_targets_grant")
def revoke_targets_grant(ctx: ToolContext, tool: str, args: dict[str, Any]) -> Check:
    held = queries.live_grants(ctx.conn, ctx.tenant_id, args["employee_id"],
                               system_id=args["system_id"], level=args["level"])
    if not held:
        return False, (f"{args['employee_id']} holds no {args['level']} grant on "
                       f"{args['system_id']} to revoke")
    return True, f"revokes {held[0]['grant_id']}"


@rule("request.is_runs_request")
def request_is_runs_request(ctx: ToolContext, tool: str, args: dict[str, Any]) -> Check:
    missing = run_scope_missing(ctx, "ticket_id")  # fail closed, as the scope check does
    if missing:
        return False, missing
    if args["request_id"] != ctx.ticket_id:
        return False, f"request {args['request_id']} is not this run's request {ctx.ticket_id}"
    if queries.request(ctx.conn, ctx.tenant_id, args["request_id"]) is None:
        return False, f"request {args['request_id']} does not exist"
    return True, f"request {args['request_id']} is this run's request"


INVARIANTS = {
    "grant_access": (employee_exists, system_exists, no_duplicate_grant),
    "revoke_access": (employee_exists, system_exists, revoke_targets_grant),
    "add_request_note": (request_is_runs_request,),
    "escalate_to_human": (request_is_runs_request,),
}


# Post-conditions: checked after a mutation committed -------------------------------------

@rule("post.grant_recorded")
def grant_recorded(ctx: ToolContext, tool: str, args: dict[str, Any],
                   result: dict[str, Any]) -> Check:
    live = queries.live_grants(ctx.conn, ctx.tenant_id, args["employee_id"],
                               system_id=args["system_id"], level=args["level"])
    if [g["grant_id"] for g in live] != [result["grant_id"]]:
        return False, f"expected exactly grant {result['grant_id']} live, found {len(live)}"
    return True, f"grant {result['grant_id']} is the one live grant"


@rule("post.grant_revoked")
def grant_revoked(ctx: ToolContext, tool: str, args: dict[str, Any],
                  result: dict[str, Any]) -> Check:
    live = queries.live_grants(ctx.conn, ctx.tenant_id, args["employee_id"],
                               system_id=args["system_id"], level=args["level"])
    if live:
        return False, f"{len(live)} {args['level']} grant(s) on {args['system_id']} still live"
    return True, f"no {args['level']} grant on {args['system_id']} is live"


POSTCONDITIONS = {"grant_access": (grant_recorded,), "revoke_access": (grant_revoked,)}


def request_answered(ctx: ToolContext, evidence: Sequence[Mapping[str, Any]]) -> Check:
    """The completion check: this run left a note on its request (the employee got an
    answer), as the database holds it now."""
    if ctx.ticket_id is None:
        return False, "the run has no request to answer on"
    row = ctx.conn.execute(
        "SELECT note_id FROM request_notes WHERE tenant_id = ? AND request_id = ? AND run_id = ?"
        " ORDER BY note_id LIMIT 1", (ctx.tenant_id, ctx.ticket_id, ctx.run_id)).fetchone()
    if row is None:
        return False, f"the employee got no answer on {ctx.ticket_id} (no note from this run)"
    return True, f"the employee was answered on {ctx.ticket_id} ({row[0]})"


_REQUEST_READ = (Read("request_id", "the id of the request being worked, from the request"),)
_GRANT_READS = (
    Read("employee_id", "the id of the employee the request is about, as lookup_employee "
         "found them"),
    Read("system_id", "the id of the system the request names"),
    Read("level", "the access level the request names"))
VERDICT_READS = {"grant_access": _GRANT_READS, "revoke_access": _GRANT_READS,
                 "add_request_note": _REQUEST_READ, "escalate_to_human": _REQUEST_READ}
"""What the argument checker reads independently for each mutation; compared with the call."""


FACT_NAMESPACES: dict[str, frozenset[str] | None] = {
    "customer": frozenset({"employee_id", "role", "active"}),
    "ticket": frozenset({"ticket_id", "status", "system_production"}),
}
"""What `gate_facts` provides, declared so `policy check` refuses a rule naming anything else."""


def gate_facts(ctx: ToolContext, tool: str, args: BaseModel) -> dict[str, Any]:
    """Facts for policy conditions. `customer` is the employee the call is about; `ticket` is
    the request being worked plus the system the call targets (`ticket.system_production`)."""
    employee_id = getattr(args, "employee_id", None) or ctx.customer_id
    employee = queries.employee(ctx.conn, ctx.tenant_id, employee_id) if employee_id else None
    request = queries.request(ctx.conn, ctx.tenant_id, ctx.ticket_id) if ctx.ticket_id else None
    system_id = getattr(args, "system_id", None)
    system = queries.system(ctx.conn, ctx.tenant_id, system_id) if system_id else None
    ticket: dict[str, Any] = {}
    if request is not None:
        ticket = {"ticket_id": request["request_id"], "status": request["status"]}
    if system_id is not None:
        # An unknown system counts as production: the conditions fail closed.
        ticket["system_production"] = bool(system["production"]) if system else True
    return {
        "customer": {"employee_id": employee["employee_id"], "role": employee["role"],
                     "active": bool(employee["active"])} if employee else {},
        "ticket": ticket,
    }


def requester_role(conn: sqlite3.Connection, requester: str, ticket: SampleTicket) -> str | None:
    """A run acts for the employee who filed the request, so their role is the requester's."""
    if ticket.customer_id is None:
        return None
    row = queries.employee(conn, ticket.tenant_id, ticket.customer_id)
    return row["role"] if row else None


# The offline second model -------------------------------------------------------------------

class AccessChecker(ScriptedChatModel):
    """Checks a proposed call against what the request says and the evidence shows."""

    model_name: str = "scripted-access-checker"

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        ticket = extract_block(messages, TICKET_MARK) or {}
        evidence = extract_block(messages, EVIDENCE_MARK) or []
        proposal = extract_block(messages, PROPOSAL_MARK) or {}
        tool, args = proposal.get("tool", ""), proposal.get("args") or {}
        ok, reason = self.judge(ticket, evidence, tool, args)
        return scripted_verdict(tools, ok, reason, self.reads(ticket, evidence, tool, args))

    @staticmethod
    def reads(ticket: dict[str, Any], evidence: list[dict[str, Any]], tool: str,
              args: dict[str, Any]) -> dict[str, Any]:
        """What this checker reads itself (VERDICT_READS), from the request and the evidence."""
        if tool not in {"grant_access", "revoke_access"}:
            return {"request_id": ticket.get("ticket_id")}
        text = f"{ticket.get('subject', '')}\n{ticket.get('body', '')}"
        named = [m.lower() for m in EMAIL.findall(ticket.get("body", ""))]
        meant = named[0] if named else str(ticket.get("customer_email", "")).lower()
        employee = next((e["result"]["employee_id"] for e in reversed(evidence)
                         if e["tool"] == "lookup_employee" and e.get("result")
                         and str(e["result"].get("email", "")).lower() == meant), None)

        def pick(found: list[str], proposed: Any) -> str | None:
            return proposed if proposed in found else next(iter(found), None)

        return {"employee_id": employee,
                "system_id": pick(SYSTEM_ID.findall(text), args.get("system_id")),
                "level": pick([lvl.lower() for lvl in LEVEL.findall(text)], args.get("level"))}

    @staticmethod
    def judge(ticket: dict[str, Any], evidence: list[dict[str, Any]], tool: str,
              args: dict[str, Any]) -> Check:
        def latest(name: str, **match: Any) -> dict[str, Any] | None:
            for e in reversed(evidence):
                if e["tool"] == name and e.get("result") is not None and all(
                        e["args"].get(k) == v for k, v in match.items()):
                    return e["result"]
            return None

        if tool in {"add_request_note", "escalate_to_human"}:
            if args.get("request_id") != ticket.get("ticket_id"):
                return False, "the call targets a different request than the one being worked"
            return True, f"the call targets {ticket.get('ticket_id')}, the request being worked"
        if tool not in {"grant_access", "revoke_access"}:
            return False, f"no basis to check a call to {tool!r}"
        text = f"{ticket.get('subject', '')}\n{ticket.get('body', '')}"
        employee = next((e["result"] for e in reversed(evidence)
                         if e["tool"] == "lookup_employee" and e.get("result")
                         and e["result"]["employee_id"] == args.get("employee_id")), None)
        if employee is None:
            return False, f"{args.get('employee_id')} was never looked up"
        named = [m.lower() for m in EMAIL.findall(ticket.get("body", ""))]
        meant = named[0] if named else str(ticket.get("customer_email", "")).lower()
        if employee["email"].lower() != meant:
            return False, f"the request is about {meant}, not {employee['email']}"
        if latest("get_system", system_id=args.get("system_id")) is None:
            return False, f"system {args.get('system_id')} was never looked up"
        if args.get("system_id") not in SYSTEM_ID.findall(text):
            return False, f"the request does not name {args.get('system_id')}"
        levels = {lvl.lower() for lvl in LEVEL.findall(text)}
        if args.get("level") not in levels:
            return False, f"the request does not ask about {args.get('level')} access"
        verb = "grant" if tool == "grant_access" else "revoke"
        if verb == "grant" and re.search(r"\brevoke|\bremove", text, re.I):
            return False, "the request asks to remove access, not to grant it"
        if verb == "revoke" and not re.search(r"\brevoke|\bremove", text, re.I):
            return False, "the request does not ask to remove access"
        return True, (f"{verb} {args['level']} on {args['system_id']} for {employee['email']} "
                      "matches the request")
