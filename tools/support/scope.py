"""Scope checks: does a call's arguments reach outside the run's tenant, customer or ticket?

Each check returns a one-line reason, or None when the call stays inside the run. They never
raise: any error (a missing argument, a database failure) becomes a reason, so the gate fails
closed. A run without the tenant, customer or ticket a check compares against is refused
(tools.common.run_scope_missing), never waved through. Ids no tenant knows are left to the
tool, which answers "not found".
"""

from __future__ import annotations

from typing import Any

from tools.base import ToolContext
from tools.common import arg as _arg
from tools.common import scope_check
from tools.support import queries


@scope_check("tenant_id", "customer_id")
def order_scope(ctx: ToolContext, args: Any) -> str | None:
    """The order must be in the run's tenant and belong to the ticket's customer."""
    order_id = str(_arg(args, "order_id"))
    owner_tenant = queries.order_tenant(ctx.conn, order_id)
    if owner_tenant is None:
        return None
    if owner_tenant != ctx.tenant_id:
        return f"order {order_id} belongs to another tenant"
    order = queries.order_row(ctx.conn, ctx.tenant_id, order_id)
    if order is None:  # deleted between the two reads
        return f"order {order_id} not found"
    if order["customer_id"] != ctx.customer_id:
        return f"order {order_id} belongs to another customer"
    return None


@scope_check("tenant_id", "customer_id")
def customer_scope(ctx: ToolContext, args: Any) -> str | None:
    """The customer id must be in the run's tenant and be the ticket's customer."""
    customer_id = str(_arg(args, "customer_id"))
    owner_tenant = queries.customer_tenant(ctx.conn, customer_id)
    if owner_tenant is not None and owner_tenant != ctx.tenant_id:
        return f"customer {customer_id} belongs to another tenant"
    if customer_id != ctx.customer_id:
        return f"customer {customer_id} is not the ticket's customer"
    return None


@scope_check("tenant_id", "customer_id")
def email_scope(ctx: ToolContext, args: Any) -> str | None:
    """The email must be the ticket's customer's."""
    email = str(_arg(args, "email")).strip()
    customer = queries.customer_row(ctx.conn, ctx.tenant_id, str(ctx.customer_id))
    if customer is None or customer["email"].lower() != email.lower():
        return f"email {email} is not the ticket's customer"
    return None


@scope_check("tenant_id", "ticket_id")
def ticket_scope(ctx: ToolContext, args: Any) -> str | None:
    """The ticket must be in the run's tenant and be the run's ticket."""
    ticket_id = str(_arg(args, "ticket_id"))
    owner_tenant = queries.ticket_tenant(ctx.conn, ticket_id)
    if owner_tenant is not None and owner_tenant != ctx.tenant_id:
        return f"ticket {ticket_id} belongs to another tenant"
    if ticket_id != ctx.ticket_id:
        return f"ticket {ticket_id} is not this run's ticket"
    return None
