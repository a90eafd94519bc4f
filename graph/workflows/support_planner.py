"""The offline planner for the support workflow: deterministic intent rules as a chat model.

It reads the same messages a real model reads (the ticket and the evidence as JSON) and answers
with one tool call at a time, or with "DONE" text. It is deliberately credulous: it takes the
amount the customer wrote at face value, as a naive model would, so the gate and the verifier
have real work to do on the injection and over-limit tickets.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from graph.models import (
    DUPLICATE_CHARGE,
    EVIDENCE_MARK,
    MONEY_BACK,
    TICKET_MARK,
    ScriptedChatModel,
    asked_cents,
    extract_block,
    find_evidence,
)

ORDER_ID = re.compile(r"\bORD-\d{5}\b")
STATUS = re.compile(r"where is|\bstatus\b|tracking|not (?:yet )?(?:arrived|received)|"
                    r"haven't received|has not arrived", re.I)
NOT_RECEIVED = re.compile(r"(?:haven't|have not|never|didn't|did not)\s+(?:received|got|gotten)|"
                          r"not (?:yet )?(?:arrived|received)|has not arrived|"
                          r"nothing (?:at the door|arrived)", re.I)


MAX_ORDERS_TO_OPEN = 5


def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


class SupportPlanner(ScriptedChatModel):
    """Intent rules for refunds, order-status questions and hand-offs."""

    model_name: str = "scripted-support-planner"

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        ticket = extract_block(messages, TICKET_MARK) or {}
        evidence: list[dict[str, Any]] = extract_block(messages, EVIDENCE_MARK) or []
        call = self.next_call(ticket, evidence)
        if call is None:
            return AIMessage(content="DONE: " + self.summary(evidence))
        name, args = call
        step = len(evidence) + 1
        return AIMessage(content="", tool_calls=[{"name": name, "args": args,
                                                  "id": f"call_{step}_{name}"}])

    @staticmethod
    def summary(evidence: list[dict[str, Any]]) -> str:
        words = {"create_refund_request": "refund requested", "add_ticket_note": "customer "
                 "answered on the ticket", "escalate_to_human": "handed to a human"}
        done = [words[e["tool"]] for e in evidence
                if e.get("error") is None and e["tool"] in words]
        return ", ".join(done) or "nothing to do"

    @staticmethod
    def order_naming_item(text: str, candidates: list[dict[str, Any]],
                          found: Any) -> str | tuple[str, dict[str, Any]] | None:
        """The candidate order one of whose items the text names; a get_order call still
        needed to know; or None when no candidate's items are named."""
        lowered = text.lower()
        for summary in candidates:
            order = found("get_order", order_id=summary["order_id"])
            if order is None:
                return "get_order", {"order_id": summary["order_id"]}
            if order["result"] and any(item["name"].lower() in lowered
                                       for item in order["result"]["items"]):
                return str(summary["order_id"])
        return None

    @staticmethod
    def unasked_amount(text: str, order: dict[str, Any]) -> int:
        """The refund when the ticket names no amount: one of two equal captured payments
        for a duplicate charge, else whatever is still refundable."""
        captured = [p["amount_cents"] for p in order.get("payments", [])
                    if p.get("status") == "captured"]
        if DUPLICATE_CHARGE.search(text) and len(captured) >= 2 and len(set(captured)) == 1:
            return min(captured[0], int(order["refundable_cents"]))
        return int(order["refundable_cents"])

    def next_call(self, ticket: dict[str, Any],
                  evidence: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
        found = functools.partial(find_evidence, evidence)

        ticket_id = ticket.get("ticket_id", "")
        if found("escalate_to_human"):
            return None
        failed = [e for e in evidence if e.get("error")]
        if failed:
            return "escalate_to_human", {
                "ticket_id": ticket_id,
                "reason": f"could not complete automatically: {failed[-1]['error']}"[:900]}

        text = f"{ticket.get('subject', '')}\n{ticket.get('body', '')}"
        email = ticket.get("customer_email")
        customer = found("lookup_customer")
        if customer is None:
            if not email:
                return "escalate_to_human", {"ticket_id": ticket_id,
                                             "reason": "the ticket names no customer"}
            return "lookup_customer", {"email": email}
        customer_id = customer["result"]["customer_id"]

        wants_refund, wants_status = bool(MONEY_BACK.search(text)), bool(STATUS.search(text))
        if not (wants_refund or wants_status):
            return "escalate_to_human", {"ticket_id": ticket_id,
                                         "reason": "no automated path for this request"}
        mentioned = ORDER_ID.findall(text)
        order_id = mentioned[0] if mentioned else None
        if order_id is None:
            orders = found("list_orders", customer_id=customer_id)
            if orders is None:
                return "list_orders", {"customer_id": customer_id, "limit": 10}
            wanted = {"delivered", "shipped"} if wants_refund else {"shipped", "pending",
                                                                    "delivered"}
            candidates = sorted((o for o in orders["result"]["orders"] if o["status"] in wanted),
                                key=lambda o: o["placed_at"], reverse=True)
            if not candidates:
                return "escalate_to_human", {"ticket_id": ticket_id,
                                             "reason": "could not tell which order is meant"}
            if not wants_refund:
                order_id = candidates[0]["order_id"]  # "where is my order": the latest one
            else:
                # A refund is for a product: find the order whose items the ticket names.
                picked = self.order_naming_item(text, candidates[:MAX_ORDERS_TO_OPEN], found)
                if isinstance(picked, tuple):
                    return picked
                if picked is None:
                    if len(candidates) > 1:
                        return "escalate_to_human", {
                            "ticket_id": ticket_id,
                            "reason": "could not tell which order the refund is for"}
                    picked = candidates[0]["order_id"]
                order_id = picked
        order = found("get_order", order_id=order_id)
        if order is None:
            return "get_order", {"order_id": order_id}
        facts = order["result"]

        if wants_refund:
            refund = found("create_refund_request", order_id=order_id)
            if refund is None:
                amounts = asked_cents(text)
                amount = amounts[0] if amounts else self.unasked_amount(text, facts)
                return "create_refund_request", {
                    "order_id": order_id, "amount_cents": amount,
                    "reason": (ticket.get("subject") or "customer refund request")[:200]}
            if found("add_ticket_note") is None:
                r = refund["result"]
                return "add_ticket_note", {
                    "ticket_id": ticket_id, "visibility": "public",
                    "body": f"We have requested a refund of {_money(r['amount_cents'])} for "
                            f"order {order_id} (refund {r['refund_id']})."}
            return None
        if facts["status"] == "delivered" and NOT_RECEIVED.search(text):
            # Marked delivered, yet the customer has nothing: a carrier claim, not an answer.
            return "escalate_to_human", {
                "ticket_id": ticket_id,
                "reason": f"order {order_id} is marked delivered but the customer has not "
                          "received it"}
        if found("add_ticket_note") is None:
            shipped = f", shipped {facts['shipped_at'][:10]}" if facts.get("shipped_at") else ""
            return "add_ticket_note", {
                "ticket_id": ticket_id, "visibility": "public",
                "body": f"Order {order_id} is {facts['status']}{shipped}."}
        return None
