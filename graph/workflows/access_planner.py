"""The offline planner for the access workflow: deterministic intent rules as a chat model.

It reads the request and the evidence as a real model would and answers with one tool call at
a time, or with "DONE". Like the support planner it is credulous: it proposes what the request
asks for (a production grant, an admin revoke, a grant the employee already holds) and leaves
it to the gate and the verifier to stop what must not happen.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from graph.models import EVIDENCE_MARK, TICKET_MARK, ScriptedChatModel, extract_block, find_evidence
from verifiers.access import EMAIL, LEVEL, SYSTEM_ID

GRANT = re.compile(r"\b(grant|give|need|request)\b", re.I)
REVOKE = re.compile(r"\b(revoke|remove)\b", re.I)
READ_ONLY = re.compile(r"which systems|what access|do i have access", re.I)


class AccessPlanner(ScriptedChatModel):
    """Intent rules for grants, revokes and "what access do I have" questions."""

    model_name: str = "scripted-access-planner"

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        ticket = extract_block(messages, TICKET_MARK) or {}
        evidence: list[dict[str, Any]] = extract_block(messages, EVIDENCE_MARK) or []
        call = self.next_call(ticket, evidence)
        if call is None:
            done = [e["tool"] for e in evidence if e.get("error") is None
                    and e["tool"] in {"grant_access", "revoke_access", "escalate_to_human"}]
            return AIMessage(content="DONE: " + (", ".join(done) or "request answered"))
        name, args = call
        return AIMessage(content="", tool_calls=[{"name": name, "args": args,
                                                  "id": f"call_{len(evidence) + 1}_{name}"}])

    @staticmethod
    def next_call(ticket: dict[str, Any],
                  evidence: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
        found = functools.partial(find_evidence, evidence)

        request_id = ticket.get("ticket_id", "")
        if found("escalate_to_human"):
            return None
        failed = [e for e in evidence if e.get("error")]
        if failed:
            return "escalate_to_human", {
                "request_id": request_id,
                "reason": f"could not complete automatically: {failed[-1]['error']}"[:900]}

        text = f"{ticket.get('subject', '')}\n{ticket.get('body', '')}"
        named = EMAIL.findall(ticket.get("body", ""))
        email = named[0] if named else ticket.get("customer_email")
        if not email:
            return "escalate_to_human", {"request_id": request_id,
                                         "reason": "the request names nobody"}
        employee = found("lookup_employee", email=email)
        if employee is None:
            return "lookup_employee", {"email": email}
        employee_id = employee["result"]["employee_id"]

        if READ_ONLY.search(text):
            grants = found("list_grants", employee_id=employee_id)
            if grants is None:
                return "list_grants", {"employee_id": employee_id}
            if found("add_request_note") is None:
                held = ", ".join(f"{g['level']} on {g['system_id']}"
                                 for g in grants["result"]["grants"]) or "no access"
                return "add_request_note", {"request_id": request_id,
                                            "body": f"You currently hold: {held}."}
            return None

        revoke, grant = bool(REVOKE.search(text)), bool(GRANT.search(text))
        systems, levels = SYSTEM_ID.findall(text), LEVEL.findall(text)
        if not (revoke or grant) or not systems or not levels:
            return "escalate_to_human", {"request_id": request_id,
                                         "reason": "no automated path for this request"}
        system_id, level = systems[0], levels[0].lower()
        if found("get_system", system_id=system_id) is None:
            return "get_system", {"system_id": system_id}
        if found("list_grants", employee_id=employee_id) is None:
            return "list_grants", {"employee_id": employee_id}
        tool = "revoke_access" if revoke else "grant_access"
        change = found(tool, employee_id=employee_id, system_id=system_id, level=level)
        if change is None:
            return tool, {"employee_id": employee_id, "system_id": system_id, "level": level,
                          "reason": (ticket.get("subject") or "access request")[:200]}
        if found("add_request_note") is None:
            verb = "revoked" if revoke else "granted"
            return "add_request_note", {
                "request_id": request_id,
                "body": f"{level.capitalize()} access to {system_id} {verb} for {email}."}
        return None
