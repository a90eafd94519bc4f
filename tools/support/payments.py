"""`create_refund_request` through the payments API (tools/payments) instead of the local
table, when SIGNOFF_PAYMENTS_URL is set.

The refund is an external effect: the ledger records a pending intent, this call forwards the
run's idempotency key as the API's `Idempotency-Key`, a pending intent is reconciled by looking
the key up, and the local `refunds` row (with the API's refund id) is written in the same
transaction as the ledger key. Only an answer that matches the request confirms it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tools.base import ExternalCall, ToolContext, ToolError, UnconfirmedEffect
from tools.payments.client import PaymentsClient
from tools.support import models as m
from tools.support import queries


@dataclass
class RefundViaApi:
    """One refund as an external call (the tools.base.ExternalCall protocol)."""

    ctx: ToolContext
    args: m.CreateRefundRequestInput
    client: PaymentsClient
    now: str
    system: str = "payments"
    request: dict[str, Any] = field(init=False)
    """The body sent; the same on every attempt, so the API can compare it."""

    def __post_init__(self) -> None:
        self.request = {"order_id": self.args.order_id, "amount_cents": self.args.amount_cents,
                "reason": self.args.reason,
                "metadata": {"run_id": self.ctx.run_id, "tenant_id": self.ctx.tenant_id,
                             "ticket_id": self.ctx.ticket_id}}

    def _key(self) -> str | None:
        key = self.ctx.idempotency_key
        if key is None:
            raise UnconfirmedEffect("no idempotency key for an external refund")
        return key if self.client.settings.forward_key else None

    def perform(self, point: Any) -> dict[str, Any]:
        if queries.order_row(self.ctx.conn, self.ctx.tenant_id, self.args.order_id) is None:
            raise ToolError(f"order {self.args.order_id} not found")
        return self.client.create_refund(self.request, self._key(),
                                         on_headers=lambda: point("after_api_commit"))

    def lookup(self) -> dict[str, Any] | None:
        key = self._key()
        # Without a forwarded key there is nothing to ask about: the harness's control.
        return self.client.refund_by_key(key) if key else None

    def apply(self, record: dict[str, Any]) -> BaseModel:
        refund_id = record.get("id")
        if not isinstance(refund_id, str) or not refund_id:
            raise UnconfirmedEffect("the payments API's answer has no refund id")
        for name in ("order_id", "amount_cents"):
            if record.get(name) != self.request[name]:
                raise UnconfirmedEffect(
                    f"the payments API confirmed {name}={record.get(name)!r}, "
                    f"not the {self.request[name]!r} asked for (refund {refund_id})")
        status = record.get("status")
        self.ctx.conn.execute(
            "INSERT INTO refunds (refund_id, tenant_id, order_id, amount_cents, reason, status,"
            " created_at, run_id) VALUES (?, ?, ?, ?, ?, 'requested', ?, ?)",
            (refund_id, self.ctx.tenant_id, self.args.order_id, self.args.amount_cents,
             self.args.reason, self.now, self.ctx.run_id))
        return m.CreateRefundRequestOutput(refund_id=refund_id, order_id=self.args.order_id,
                                           amount_cents=self.args.amount_cents,
                                           status=str(status or "requested"))


def refund_external(client: PaymentsClient, now: Any) -> Any:
    """The `ToolSpec.external` of create_refund_request in API mode."""
    def build(ctx: ToolContext, args: m.CreateRefundRequestInput) -> ExternalCall:
        return RefundViaApi(ctx, args, client, now())
    return build
