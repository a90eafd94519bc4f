"""The offline support planner's reading of a ticket: which words ask for money back, which
amount is asked for, and when an order-status question needs a person."""

from __future__ import annotations

from typing import Any

import pytest

from graph.models import MONEY_BACK, asked_cents
from graph.workflows.support_planner import SupportPlanner

EMAIL = "kofi.evans.11@example.com"


@pytest.mark.parametrize(("text", "asks"), [
    ("Please refund $29.00 for ORD-10014.", True),
    ("Please reimburse the $39.00 I paid for the broken towel set in ORD-10097.", True),
    ("Could you credit $45.00 back to my card for ORD-10002?", True),
    ("I'd like to be compensated $12.50 for the missing marker set from ORD-10063.", True),
    ("I think I was charged twice for ORD-10004.", True),
    ("There is a duplicate payment on ORD-10004.", True),
    ("I paid by credit card for ORD-10004; where is it?", False),
    ("Where is ORD-10005?", False),
])
def test_the_words_that_ask_for_money_back(text: str, asks: bool) -> None:
    assert bool(MONEY_BACK.search(text)) is asks


@pytest.mark.parametrize(("text", "cents"), [
    # The amount in the sentence that asks, not the order total mentioned first.
    ("Order ORD-10065 came to $201.50 but only the marker set ($12.50) arrived broken. "
     "Please refund $12.50 for it.", [1250]),
    ("Please reimburse the $39.00 I paid for the towel set.", [3900]),
    # No amount where the ask is: every amount in the ticket, in order.
    ("The lamp was $29.00 and the shade $12.00. I want a refund.", [2900, 1200]),
    ("Please refund ORD-10014.", []),
])
def test_the_amount_asked_for(text: str, cents: list[int]) -> None:
    assert asked_cents(text) == cents


def _order(status: str) -> dict[str, Any]:
    return {"order_id": "ORD-10014", "customer_id": "CUS-0011", "status": status,
            "total_cents": 2900, "refundable_cents": 2900, "shipped_at": "2026-09-21T10:00:00",
            "items": [{"sku": "LAMP", "name": "desk lamp", "qty": 1, "unit_price_cents": 2900}],
            "payments": []}


def _next(body: str, status: str) -> tuple[str, dict[str, Any]] | None:
    ticket = {"ticket_id": "TKT-5001", "customer_id": "CUS-0011", "customer_email": EMAIL,
              "subject": "Order", "body": body}
    evidence = [
        {"tool": "lookup_customer", "args": {"email": EMAIL},
         "result": {"customer_id": "CUS-0011", "email": EMAIL}, "error": None},
        {"tool": "get_order", "args": {"order_id": "ORD-10014"}, "result": _order(status),
         "error": None},
    ]
    return SupportPlanner().next_call(ticket, evidence)


def test_other_words_for_a_refund_lead_to_a_refund_of_the_amount_asked() -> None:
    call = _next("The lamp in ORD-10014 cost $29.00 with shipping of $4.00. Please reimburse "
                 "the $25.00 I paid for the lamp.", "delivered")
    assert call is not None
    assert call[0] == "create_refund_request"
    assert (call[1]["order_id"], call[1]["amount_cents"]) == ("ORD-10014", 2500)


def test_delivered_but_not_received_goes_to_a_person() -> None:
    call = _next("Tracking for ORD-10014 says delivered but I haven't received anything.",
                 "delivered")
    assert call is not None
    assert call[0] == "escalate_to_human"
    assert "marked delivered but the customer has not received it" in call[1]["reason"]


def test_not_arrived_while_shipped_is_answered_with_the_status() -> None:
    call = _next("ORD-10014 has not arrived yet, where is it?", "shipped")
    assert call is not None
    assert call[0] == "add_ticket_note"
    assert call[1]["body"].startswith("Order ORD-10014 is shipped")


def test_a_duplicate_charge_with_no_amount_refunds_one_payment() -> None:
    order = {**_order("delivered"), "total_cents": 3499, "refundable_cents": 6998,
             "payments": [{"payment_id": "PAY-1", "amount_cents": 3499, "status": "captured"},
                          {"payment_id": "PAY-2", "amount_cents": 3499, "status": "captured"}]}
    duplicate = "I think I was charged twice for ORD-10014, please refund the duplicate charge."
    assert SupportPlanner.unasked_amount(duplicate, order) == 3499
    # Not a duplicate charge, or payments that differ: what is still refundable.
    assert SupportPlanner.unasked_amount("Please refund ORD-10014.", order) == 6998
    order["payments"][1]["amount_cents"] = 1000
    assert SupportPlanner.unasked_amount(duplicate, order) == 6998
