"""The support workflow's verifiers: rule invariants, post-conditions, gate facts, and the
offline second-model argument checker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel

from graph.models import (
    EVIDENCE_MARK,
    MONEY_BACK,
    PROPOSAL_MARK,
    TICKET_MARK,
    ScriptedChatModel,
    extract_block,
)
from tools.base import ToolContext
from tools.common import run_scope_missing
from tools.support import queries
from verifiers.argument_check import Read, scripted_verdict
from verifiers.reading import NO_MENTION, Reading, partial_ask, read_ticket
from verifiers.rules import Check, rule

REFUNDABLE_STATUSES = frozenset({"shipped", "delivered"})
def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


# Invariants: checked before a mutation commits -------------------------------------------

@rule("refund.order_of_customer")
def refund_order_of_customer(ctx: ToolContext, tool: str, args: dict[str, Any]) -> Check:
    order = queries.order_row(ctx.conn, ctx.tenant_id, args["order_id"])
    if order is None:
        return False, f"order {args['order_id']} does not exist in this tenant"
    missing = run_scope_missing(ctx, "customer_id")  # fail closed, as the scope check does
    if missing:
        return False, missing
    if order["customer_id"] != ctx.customer_id:
        return False, f"order {args['order_id']} belongs to another customer"
    return True, f"order {args['order_id']} belongs to {order['customer_id']}"


@rule("refund.within_refundable_balance")
def refund_within_balance(ctx: ToolContext, tool: str, args: dict[str, Any]) -> Check:
    balance = queries.refundable_balance_cents(ctx.conn, ctx.tenant_id, args["order_id"])
    amount = args["amount_cents"]
    if amount > balance:
        return False, (f"amount {_money(amount)} exceeds the refundable balance "
                       f"{_money(balance)} (paid minus already refunded)")
    return True, f"amount {_money(amount)} <= refundable balance {_money(balance)}"


@rule("refund.status_allows")
def refund_status_allows(ctx: ToolContext, tool: str, args: dict[str, Any]) -> Check:
    order = queries.order_row(ctx.conn, ctx.tenant_id, args["order_id"])
    if order is None:
        return False, f"order {args['order_id']} does not exist in this tenant"
    if order["status"] not in REFUNDABLE_STATUSES:
        return False, f"order status {order['status']!r} does not allow a refund"
    return True, f"order status {order['status']!r} allows a refund"


@rule("ticket.is_runs_ticket")
def ticket_is_runs_ticket(ctx: ToolContext, tool: str, args: dict[str, Any]) -> Check:
    missing = run_scope_missing(ctx, "ticket_id")
    if missing:
        return False, missing
    if args["ticket_id"] != ctx.ticket_id:
        return False, f"ticket {args['ticket_id']} is not this run's ticket {ctx.ticket_id}"
    if queries.ticket_row(ctx.conn, ctx.tenant_id, args["ticket_id"]) is None:
        return False, f"ticket {args['ticket_id']} does not exist in this tenant"
    return True, f"ticket {args['ticket_id']} is this run's ticket"


INVARIANTS = {
    "create_refund_request": (refund_order_of_customer, refund_within_balance,
                              refund_status_allows),
    "add_ticket_note": (ticket_is_runs_ticket,),
    "escalate_to_human": (ticket_is_runs_ticket,),
}


# Post-conditions: checked after a mutation committed -------------------------------------

@rule("post.refunds_within_payments")
def refunds_within_payments(ctx: ToolContext, tool: str, args: dict[str, Any],
                            result: dict[str, Any]) -> Check:
    paid = queries.paid_cents(ctx.conn, ctx.tenant_id, args["order_id"])
    refunded = queries.refunded_cents(ctx.conn, ctx.tenant_id, args["order_id"])
    if refunded > paid:
        return False, f"refunds {_money(refunded)} exceed payments {_money(paid)}"
    return True, f"refunds {_money(refunded)} <= payments {_money(paid)}"


@rule("post.refund_recorded")
def refund_recorded(ctx: ToolContext, tool: str, args: dict[str, Any],
                    result: dict[str, Any]) -> Check:
    row = ctx.conn.execute(
        "SELECT amount_cents FROM refunds WHERE refund_id = ? AND tenant_id = ?",
        (result["refund_id"], ctx.tenant_id)).fetchone()
    if row is None or row[0] != args["amount_cents"]:
        return False, f"refund {result['refund_id']} is not recorded as requested"
    return True, f"refund {result['refund_id']} recorded"


POSTCONDITIONS = {"create_refund_request": (refunds_within_payments, refund_recorded)}


def customer_answered(ctx: ToolContext, evidence: Sequence[Mapping[str, Any]]) -> Check:
    """The completion check: this run left a public note on its ticket (the customer got an
    answer), as the database holds it now."""
    if ctx.ticket_id is None:
        return False, "the run has no ticket to answer on"
    row = ctx.conn.execute(
        "SELECT note_id FROM ticket_notes WHERE tenant_id = ? AND ticket_id = ? AND run_id = ?"
        " AND visibility = 'public' ORDER BY note_id LIMIT 1",
        (ctx.tenant_id, ctx.ticket_id, ctx.run_id)).fetchone()
    if row is None:
        return False, (f"the customer got no answer on {ctx.ticket_id} "
                       "(no public note from this run)")
    return True, f"the customer was answered on {ctx.ticket_id} ({row[0]})"


_TICKET_READ = (Read("ticket_id", "the id of the ticket being worked, from the ticket"),)
VERDICT_READS = {
    "create_refund_request": (
        Read("customer_id", "the id of the customer who wrote the ticket, as lookup_customer "
             "found them by the ticket's email"),
        Read("order_id", "the id of the order the ticket is about, from the ticket and the "
             "evidence"),
        Read("amount_cents", "the amount the customer asked for, in cents", "integer",
             ceiling=True)),
    "add_ticket_note": _TICKET_READ,
    "escalate_to_human": _TICKET_READ,
}
"""What the argument checker reads independently for each mutation; compared with the call."""


FACT_NAMESPACES: dict[str, frozenset[str] | None] = {
    "customer": frozenset({"customer_id", "flagged"}),
    "ticket": frozenset({"ticket_id", "status"}),
    "order": frozenset({"order_id", "customer_id", "status", "total_cents", "paid_cents",
                        "refunded_cents", "refundable_cents", "items", "captured_payments"}),
}
"""What `gate_facts` provides, declared so `policy check` refuses a rule naming anything else."""


def gate_facts(ctx: ToolContext, tool: str, args: BaseModel) -> dict[str, Any]:
    """Facts the policy's conditions may use: the ticket's customer and ticket, and the order
    the call names (`order`, empty when the call names none or it is not in the tenant)."""
    customer = (queries.customer_row(ctx.conn, ctx.tenant_id, ctx.customer_id)
                if ctx.customer_id else None)
    ticket = (queries.ticket_row(ctx.conn, ctx.tenant_id, ctx.ticket_id)
              if ctx.ticket_id else None)
    order_id = str(getattr(args, "order_id", "") or "")
    order = queries.order_row(ctx.conn, ctx.tenant_id, order_id) if order_id else None
    order_facts: dict[str, Any] = {}
    if order is not None:
        paid = queries.paid_cents(ctx.conn, ctx.tenant_id, order_id)
        refunded = queries.refunded_cents(ctx.conn, ctx.tenant_id, order_id)
        order_facts = {
            "order_id": order["order_id"], "customer_id": order["customer_id"],
            "status": order["status"], "total_cents": order["total_cents"], "paid_cents": paid,
            "refunded_cents": refunded, "refundable_cents": paid - refunded,
            "items": [{"name": i["name"], "qty": i["qty"],
                       "unit_price_cents": i["unit_price_cents"]}
                      for i in queries.order_items(ctx.conn, ctx.tenant_id, order_id)],
            "captured_payments": sum(1 for p in queries.order_payments(
                ctx.conn, ctx.tenant_id, order_id) if p["status"] == "captured")}
    return {
        "customer": {"customer_id": customer["customer_id"],
                     "flagged": bool(customer["flagged"])} if customer else {},
        "ticket": {"ticket_id": ticket["ticket_id"], "status": ticket["status"]} if ticket else {},
        "order": order_facts,
    }


# The offline second model -------------------------------------------------------------------

class SupportChecker(ScriptedChatModel):
    """Checks a proposed call against what the ticket says and the evidence shows."""

    model_name: str = "scripted-support-checker"

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        ticket = extract_block(messages, TICKET_MARK) or {}
        evidence = extract_block(messages, EVIDENCE_MARK) or []
        proposal = extract_block(messages, PROPOSAL_MARK) or {}
        tool, args = proposal.get("tool", ""), proposal.get("args") or {}
        ok, reason = self.judge(ticket, evidence, tool, args,
                                origin=proposal.get("origin") or "model")
        return scripted_verdict(tools, ok, reason, self.reads(ticket, evidence, tool, args, ok))

    @staticmethod
    def reads(ticket: dict[str, Any], evidence: list[dict[str, Any]], tool: str,
              args: dict[str, Any], judged_ok: bool) -> dict[str, Any]:
        """What this checker reads itself (VERDICT_READS), from the ticket and the evidence."""
        if tool != "create_refund_request":
            return {"ticket_id": ticket.get("ticket_id")}
        email = str(ticket.get("customer_email", "")).lower()
        customer = next((e["result"] for e in reversed(evidence)
                         if e["tool"] == "lookup_customer" and e.get("result")
                         and str(e["result"].get("email", "")).lower() == email), None)
        customer_id = customer["customer_id"] if customer else None
        reading = read_ticket(str(ticket.get("subject", "")), str(ticket.get("body", "")))
        mentioned = list(reading.order_ids)
        owned = [e["args"].get("order_id") for e in evidence
                 if e["tool"] == "get_order" and e.get("result")
                 and e["result"].get("customer_id") == customer_id]
        order_id = (args.get("order_id") if args.get("order_id") in (mentioned or owned)
                    else (mentioned or owned or [None])[0])
        stated = reading.amounts
        amount = args.get("amount_cents")
        if stated and amount not in stated:
            amount = max(stated)
        elif not stated and not judged_ok:
            amount = None  # nothing asked, nothing the evidence supports
        return {"customer_id": customer_id, "order_id": order_id, "amount_cents": amount}

    @staticmethod
    def unasked(reading: Reading, text: str) -> str | None:
        """Why the customer's own words do not ask for this refund, before any evidence is
        read: no ask, an amount it cannot read, an order reference that is not an id."""
        if not reading.asks:
            if reading.why_no_ask == NO_MENTION and MONEY_BACK.search(text):
                return ("the customer does not ask for money back; only lines presented as "
                        "another speaker's mention it")
            return f"the customer does not ask for money back: their words {reading.why_no_ask}"
        if reading.unclear:
            return f"{reading.unclear}; a person has to read the ticket"
        if reading.bad_order_refs:
            return (f"the ticket names {reading.bad_order_refs[0]!r}, which is not an order id; "
                    "a person has to tell which order is meant")
        return None

    @staticmethod
    def beyond_ask(reading: Reading, order: dict[str, Any], amount: int) -> str | None:
        """Why the refund is more than the customer asked for on this order: a whole-order
        amount for a part of it, or a duplicate charge the payments do not show."""
        order_id = order.get("order_id")
        if reading.duplicate_charge:
            captured = [int(p.get("amount_cents", 0)) for p in order.get("payments", [])
                        if p.get("status") == "captured"]
            if len(captured) < 2:
                return (f"the customer says they were charged twice, but order {order_id} "
                        f"shows {len(captured)} captured payment(s)")
            if not reading.amounts and amount > max(captured):
                return (f"a duplicate charge is one payment ({_money(max(captured))}), "
                        f"not {_money(amount)}")
        part = partial_ask(reading.own_text, list(order.get("items", [])))
        if part and not reading.amounts:
            return (f"amount unclear: the customer asks about part of order {order_id} "
                    f"({part}), not the whole of it; a person has to set the amount")
        return None

    @staticmethod
    def judge(ticket: dict[str, Any], evidence: list[dict[str, Any]], tool: str,
              args: dict[str, Any], origin: str = "model") -> Check:
        """Pass only a call the ticket and the evidence justify. For a human edit, an amount
        below what the customer asked is the approver's call (a partial refund)."""
        def latest(name: str, **match: Any) -> dict[str, Any] | None:
            for e in reversed(evidence):
                if e["tool"] == name and e.get("result") is not None and all(
                        e["args"].get(k) == v for k, v in match.items()):
                    return e["result"]
            return None

        text = f"{ticket.get('subject', '')}\n{ticket.get('body', '')}"
        if tool in {"add_ticket_note", "escalate_to_human"}:
            if args.get("ticket_id") != ticket.get("ticket_id"):
                return False, "the call targets a different ticket than the one being worked"
            return True, f"the call targets {ticket.get('ticket_id')}, the ticket being worked"
        if tool != "create_refund_request":
            return False, f"no basis to check a call to {tool!r}"

        reading = read_ticket(str(ticket.get("subject", "")), str(ticket.get("body", "")))
        refused = SupportChecker.unasked(reading, text) if origin == "model" else None
        if refused:
            return False, refused
        order_id, amount = args.get("order_id"), args.get("amount_cents")
        customer = latest("lookup_customer")
        order = latest("get_order", order_id=order_id)
        if customer is None or order is None:
            return False, "the refund is proposed without looking up the customer and the order"
        if customer.get("email", "").lower() != str(ticket.get("customer_email", "")).lower():
            return False, "the customer looked up is not the one who wrote the ticket"
        if order["customer_id"] != customer["customer_id"]:
            return False, f"order {order_id} is not the ticket customer's order"
        mentioned = reading.order_ids
        if mentioned and order_id not in mentioned:
            return False, f"the ticket is about {', '.join(mentioned)}, not {order_id}"
        if not isinstance(amount, int) or amount > order["total_cents"] * max(
                1, len(order.get("payments", []))):
            return False, f"the amount exceeds what was paid for order {order_id}"
        if origin == "model":
            refused = SupportChecker.beyond_ask(reading, order, amount)
            if refused:
                return False, refused
        stated = reading.amounts
        partial = origin == "human_edit" and stated and amount < max(stated)
        if stated and amount not in stated and not partial:
            return False, f"the customer asked for {', '.join(map(_money, stated))}, " \
                          f"not {_money(amount)}"
        if amount > order["refundable_cents"]:
            return False, (f"the amount {_money(amount)} is more than the "
                           f"{_money(order['refundable_cents'])} still refundable")
        if partial:
            return True, (f"order {order_id} matches; {_money(amount)} is an approver's partial "
                          f"refund of the {_money(max(stated))} asked for")
        return True, f"order {order_id} and {_money(amount)} match the ticket and the evidence"
