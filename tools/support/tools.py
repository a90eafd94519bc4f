"""The six support tools and the registry that exposes them.

Tools never commit or roll back: the execute node wraps each mutation and its idempotency
record in one transaction. Every query is filtered by the run's tenant, and rows a tool creates
record the run id. New ids are the next number after the largest existing one, so they depend
only on the database content.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC

from tools.base import ToolContext, ToolError, ToolRegistry, ToolSpec
from tools.common import Clock, next_id
from tools.common import utc_now as _utc_now
from tools.payments.client import PaymentsClient, PaymentsSettings
from tools.support import models as m
from tools.support import queries
from tools.support.faults import FaultPlan
from tools.support.payments import refund_external
from tools.support.scope import customer_scope, email_scope, order_scope, ticket_scope


class SupportTools:
    """Implementations of the support tools; `clock` stamps the rows they create."""

    def __init__(self, clock: Clock = _utc_now) -> None:
        self._clock = clock

    def _now(self) -> str:
        return self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def lookup_customer(
        self, ctx: ToolContext, args: m.LookupCustomerInput
    ) -> m.LookupCustomerOutput:
        customer = queries.customer_by_email(ctx.conn, ctx.tenant_id, args.email)
        if customer is None:
            raise ToolError(f"no customer with email {args.email}")
        count = ctx.conn.execute(
            "SELECT COUNT(*) FROM orders WHERE tenant_id = ? AND customer_id = ?",
            (ctx.tenant_id, customer["customer_id"]),
        ).fetchone()[0]
        return m.LookupCustomerOutput(
            customer_id=customer["customer_id"], name=customer["name"], email=customer["email"],
            flagged=bool(customer["flagged"]), order_count=count,
        )

    def get_order(self, ctx: ToolContext, args: m.GetOrderInput) -> m.GetOrderOutput:
        order = queries.order_row(ctx.conn, ctx.tenant_id, args.order_id)
        if order is None:
            raise ToolError(f"order {args.order_id} not found")
        paid = queries.paid_cents(ctx.conn, ctx.tenant_id, args.order_id)
        refunded = queries.refunded_cents(ctx.conn, ctx.tenant_id, args.order_id)
        return m.GetOrderOutput(
            order_id=order["order_id"], customer_id=order["customer_id"], status=order["status"],
            total_cents=order["total_cents"], paid_cents=paid, refunded_cents=refunded,
            refundable_cents=paid - refunded, placed_at=order["placed_at"],
            shipped_at=order["shipped_at"],
            items=[m.OrderItem(**i) for i in queries.order_items(ctx.conn, ctx.tenant_id,
                                                                 args.order_id)],
            payments=[m.Payment(payment_id=p["payment_id"], amount_cents=p["amount_cents"],
                                status=p["status"])
                      for p in queries.order_payments(ctx.conn, ctx.tenant_id, args.order_id)],
        )

    def list_orders(self, ctx: ToolContext, args: m.ListOrdersInput) -> m.ListOrdersOutput:
        if queries.customer_row(ctx.conn, ctx.tenant_id, args.customer_id) is None:
            raise ToolError(f"customer {args.customer_id} not found")
        rows = queries.customer_orders(ctx.conn, ctx.tenant_id, args.customer_id, args.limit)
        return m.ListOrdersOutput(orders=[m.OrderSummary(**r) for r in rows])

    def create_refund_request(
        self, ctx: ToolContext, args: m.CreateRefundRequestInput
    ) -> m.CreateRefundRequestOutput:
        # Only existence is checked here: whether the amount is allowed is the verifier's call,
        # and the post-check confirms refunds never exceed payments.
        if queries.order_row(ctx.conn, ctx.tenant_id, args.order_id) is None:
            raise ToolError(f"order {args.order_id} not found")
        refund_id = next_id(ctx.conn, "refunds", "refund_id", "RF-")
        ctx.conn.execute(
            "INSERT INTO refunds (refund_id, tenant_id, order_id, amount_cents, reason, status,"
            " created_at, run_id) VALUES (?, ?, ?, ?, ?, 'requested', ?, ?)",
            (refund_id, ctx.tenant_id, args.order_id, args.amount_cents, args.reason,
             self._now(), ctx.run_id),
        )
        return m.CreateRefundRequestOutput(refund_id=refund_id, order_id=args.order_id,
                                           amount_cents=args.amount_cents, status="requested")

    def add_ticket_note(
        self, ctx: ToolContext, args: m.AddTicketNoteInput
    ) -> m.AddTicketNoteOutput:
        if queries.ticket_row(ctx.conn, ctx.tenant_id, args.ticket_id) is None:
            raise ToolError(f"ticket {args.ticket_id} not found")
        note_id = next_id(ctx.conn, "ticket_notes", "note_id", "NOTE-")
        ctx.conn.execute(
            "INSERT INTO ticket_notes (note_id, tenant_id, ticket_id, body, visibility,"
            " created_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (note_id, ctx.tenant_id, args.ticket_id, args.body, args.visibility, self._now(),
             ctx.run_id),
        )
        return m.AddTicketNoteOutput(note_id=note_id, ticket_id=args.ticket_id)

    def escalate_to_human(
        self, ctx: ToolContext, args: m.EscalateToHumanInput
    ) -> m.EscalateToHumanOutput:
        if queries.ticket_row(ctx.conn, ctx.tenant_id, args.ticket_id) is None:
            raise ToolError(f"ticket {args.ticket_id} not found")
        escalation_id = next_id(ctx.conn, "escalations", "escalation_id", "ESC-")
        ctx.conn.execute(
            "INSERT INTO escalations (escalation_id, tenant_id, ticket_id, reason, created_at,"
            " run_id) VALUES (?, ?, ?, ?, ?, ?)",
            (escalation_id, ctx.tenant_id, args.ticket_id, args.reason, self._now(), ctx.run_id),
        )
        ctx.conn.execute(
            "UPDATE tickets SET status = 'escalated' WHERE tenant_id = ? AND ticket_id = ?",
            (ctx.tenant_id, args.ticket_id),
        )
        return m.EscalateToHumanOutput(escalation_id=escalation_id, ticket_id=args.ticket_id)


def support_specs(clock: Clock = _utc_now) -> list[ToolSpec]:
    """The contracts of the six support tools, without faults."""
    t = SupportTools(clock)
    return [
        ToolSpec("lookup_customer", "Find the customer with this email address in the tenant.",
                 m.LookupCustomerInput, m.LookupCustomerOutput, mutates=False, risk="read",
                 run=t.lookup_customer, scope=email_scope),
        ToolSpec("get_order", "Get one order: status, items, payments and refundable balance "
                 "(all money in integer cents).",
                 m.GetOrderInput, m.GetOrderOutput, mutates=False, risk="read",
                 run=t.get_order, scope=order_scope),
        ToolSpec("list_orders", "List a customer's most recent orders, newest first.",
                 m.ListOrdersInput, m.ListOrdersOutput, mutates=False, risk="read",
                 run=t.list_orders, scope=customer_scope),
        ToolSpec("create_refund_request", "Request a refund of amount_cents on an order; "
                 "a person or the payment system pays it out later.",
                 m.CreateRefundRequestInput, m.CreateRefundRequestOutput, mutates=True,
                 risk="write", run=t.create_refund_request, scope=order_scope),
        ToolSpec("add_ticket_note", "Add a note to the ticket: internal for staff, public for "
                 "the customer.",
                 m.AddTicketNoteInput, m.AddTicketNoteOutput, mutates=True, risk="write",
                 run=t.add_ticket_note, scope=ticket_scope),
        ToolSpec("escalate_to_human", "Hand the ticket to a human agent with a reason; marks "
                 "it escalated.",
                 m.EscalateToHumanInput, m.EscalateToHumanOutput, mutates=True, risk="handoff",
                 run=t.escalate_to_human, scope=ticket_scope),
    ]


def support_registry(faults: FaultPlan | None = None, clock: Clock = _utc_now,
                     payments: PaymentsSettings | None = None) -> ToolRegistry:
    """A new registry with the six support tools, with `faults` injected when given.

    With `payments` (by default: from SIGNOFF_PAYMENTS_URL and its companions, read here
    because every edge that drives runs builds its tools through this), create_refund_request
    refunds through that payments API; without, it writes the local refunds table.
    """
    specs = support_specs(clock)
    settings = payments or PaymentsSettings.from_env(os.environ)
    if settings is not None:
        now = SupportTools(clock)._now
        client = PaymentsClient(settings)
        specs = [replace(spec, external=refund_external(client, now),
                         description=spec.description.replace(
                             "a person or the payment system pays it out later",
                             "the payments API records it"))
                 if spec.name == "create_refund_request" else spec for spec in specs]
    if faults is not None:
        specs = [faults.apply(spec) for spec in specs]
    return ToolRegistry(specs)
