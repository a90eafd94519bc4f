"""Argument and result schemas of the support tools.

Inputs forbid unknown fields and constrain ids, amounts and text, so a malformed call a model
writes is rejected by the gate before any tool runs. Money is integer cents.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

OrderId = Annotated[str, Field(pattern=r"^ORD-\d{5}$", description="e.g. ORD-10023")]
CustomerId = Annotated[str, Field(pattern=r"^CUS-\d{4}$", description="e.g. CUS-0001")]
TicketId = Annotated[str, Field(pattern=r"^TKT-\d{4}$", description="e.g. TKT-1001")]
Cents = Annotated[int, Field(gt=0, le=10_000_000, description="amount in integer cents")]
Email = Annotated[
    str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LookupCustomerInput(_Input):
    email: Email


class LookupCustomerOutput(BaseModel):
    customer_id: str
    name: str
    email: str
    flagged: bool
    order_count: int


class GetOrderInput(_Input):
    order_id: OrderId


class OrderItem(BaseModel):
    sku: str
    name: str
    qty: int
    unit_price_cents: int


class Payment(BaseModel):
    payment_id: str
    amount_cents: int
    status: str


class GetOrderOutput(BaseModel):
    order_id: str
    customer_id: str
    status: str
    total_cents: int
    paid_cents: int
    refunded_cents: int
    refundable_cents: int
    placed_at: str
    shipped_at: str | None
    items: list[OrderItem]
    payments: list[Payment]


class ListOrdersInput(_Input):
    customer_id: CustomerId
    limit: int = Field(default=10, ge=1, le=50)


class OrderSummary(BaseModel):
    order_id: str
    status: str
    total_cents: int
    placed_at: str


class ListOrdersOutput(BaseModel):
    orders: list[OrderSummary]


class CreateRefundRequestInput(_Input):
    order_id: OrderId
    amount_cents: Cents
    reason: str = Field(min_length=3, max_length=500)


class CreateRefundRequestOutput(BaseModel):
    refund_id: str
    order_id: str
    amount_cents: int
    status: str


class AddTicketNoteInput(_Input):
    ticket_id: TicketId
    body: str = Field(min_length=1, max_length=4000)
    visibility: Literal["internal", "public"] = "internal"


class AddTicketNoteOutput(BaseModel):
    note_id: str
    ticket_id: str


class EscalateToHumanInput(_Input):
    ticket_id: TicketId
    reason: str = Field(min_length=3, max_length=1000)


class EscalateToHumanOutput(BaseModel):
    escalation_id: str
    ticket_id: str
