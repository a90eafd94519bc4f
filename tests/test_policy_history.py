"""Policy over the run's history, the domain's fact namespaces, [[scope]] rules, the richer
condition language, and runs that recover from a refusal (issue 17 items 1, 2, 3, 7)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from graph.runner import Runner
from tests.conftest import sample
from tests.test_gate import POLICY, POLICY_TEXT, db, refund, request
from tests.test_policy import explain
from tests.test_verifier import (
    MARCUS,
    REQUESTER,
    ScriptedPlanner,
    final_state,
    refunds_of,
    variant,
)
from verifiers.gate import evaluate_gate
from verifiers.history import history_facts
from verifiers.policy import parse_policy

__all__ = ["db", "variant"]  # fixtures

SUPPORT_FACTS = {"customer": frozenset({"customer_id", "flagged"}),
                 "ticket": frozenset({"ticket_id", "status"}),
                 "order": frozenset({"order_id", "customer_id", "status", "total_cents",
                                     "paid_cents", "refunded_cents", "refundable_cents",
                                     "items", "captured_payments"})}


def policy_with(*rules: str) -> Any:
    """The shipped policy with `rules` (TOML) checked before its own."""
    anchor = '[[rules]]\nid = "read.green"'
    text = POLICY_TEXT.replace(anchor, "\n".join(rules) + "\n" + anchor, 1)
    return parse_policy(text, source="p.toml", facts=SUPPORT_FACTS,
                        known_tools=set(POLICY.allowed_tools))


def call(tool: str, ok: bool = True, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args, "result": {"seen": True} if ok else None,
            "error": None if ok else "timeout"}


# history ------------------------------------------------------------------------------------

def test_history_counts_successes_and_attempts_and_keeps_the_last_result() -> None:
    facts = history_facts([call("lookup_customer", ok=False), call("lookup_customer"),
                           call("get_order", order_id="ORD-1")], ["lookup_customer",
                                                                  "get_order", "list_orders"])
    assert facts["ok"] == {"lookup_customer": 1, "get_order": 1, "list_orders": 0}
    assert facts["count"] == {"lookup_customer": 2, "get_order": 1, "list_orders": 0}
    assert facts["last"] == {"lookup_customer": {"seen": True}, "get_order": {"seen": True}}
    assert [c["ok"] for c in facts["calls"]] == [False, True, True]


AUTHENTICATE_FIRST = '''[[rules]]
id = "write.unauthenticated"
tools = ["add_ticket_note"]
when = "history.ok.lookup_customer == 0"
tier = "red"
reason = "look the customer up before any write"
'''


@pytest.mark.parametrize(("history", "rule_id"), [
    ([], "write.unauthenticated"),
    ([call("lookup_customer", ok=False)], "write.unauthenticated"),  # a failed lookup is not one
    ([call("lookup_customer")], "note.green"),
])
def test_a_rule_can_require_an_earlier_successful_call(db: sqlite3.Connection,
                                                       history: list[Any], rule_id: str) -> None:
    policy = policy_with(AUTHENTICATE_FIRST)
    note = {"ticket_id": "TKT-1002", "body": "hello", "visibility": "public"}
    decision = evaluate_gate(request(db, "add_ticket_note", note, policy=policy,
                                     history=history))
    assert decision["rule_id"] == rule_id, decision


def test_reading_a_result_that_does_not_exist_blocks(db: sqlite3.Connection) -> None:
    policy = policy_with('''[[rules]]
id = "note.verified_only"
tools = ["add_ticket_note"]
when = "not history.last.lookup_customer.verified"
tier = "red"
reason = "only verified customers get notes"
''')
    note = {"ticket_id": "TKT-1002", "body": "hello", "visibility": "public"}
    decision = evaluate_gate(request(db, "add_ticket_note", note, policy=policy, history=[]))
    assert decision["route"] == "block" and decision["rule_id"] == "note.verified_only"
    assert "could not be evaluated" in decision["reason"]


# facts and the condition language -----------------------------------------------------------

@pytest.mark.parametrize(("when", "matches"), [
    ("len(order.items) >= 1", True),
    ("any(i.qty > 1 for i in order.items)", False),
    ("all(i.unit_price_cents > 0 for i in order.items)", True),
    ("order.items[0].name == 'Noise-cancelling headphones'", True),
    ("order.status in ['delivered', 'shipped'] and order.captured_payments == 1", True),
    ("blank(order.items[0].name)", False),
])
def test_conditions_read_the_order_facts(db: sqlite3.Connection, when: str,
                                         matches: bool) -> None:
    policy = policy_with(f'''[[rules]]
id = "refund.probe"
tools = ["create_refund_request"]
when = "{when}"
tier = "red"
reason = "probe"
''')
    decision = evaluate_gate(request(db, "create_refund_request", refund("ORD-10002", 1000),
                                     policy=policy))
    assert (decision["rule_id"] == "refund.probe") is matches, decision


def test_a_fact_key_the_workflow_does_not_provide_is_an_error_at_load() -> None:
    with pytest.raises(Exception) as info:
        policy_with('''[[rules]]
id = "refund.vip"
tools = ["create_refund_request"]
when = "order.vip_level > 2"
tier = "red"
reason = "x"
''')
    assert "order.vip_level is not a fact the workflow provides" in str(info.value)


# [[scope]] ----------------------------------------------------------------------------------

def test_scope_rule_blocks_another_customers_order(db: sqlite3.Connection) -> None:
    # ORD-10001 is CUS-0001's; the run acts for CUS-0002. The Python scope helper is taken
    # away to show the policy's own rule deciding.
    from tests.test_gate import REGISTRY
    spec = REGISTRY.get("create_refund_request")
    assert spec is not None
    saved = spec.scope
    object.__setattr__(spec, "scope", None)
    try:
        other = evaluate_gate(request(db, "create_refund_request", refund("ORD-10001", 1000)))
        own = evaluate_gate(request(db, "create_refund_request", refund("ORD-10002", 1000)))
        missing = evaluate_gate(request(db, "create_refund_request", refund("ORD-99999", 1000)))
        nobody = evaluate_gate(request(db, "create_refund_request", refund("ORD-10002", 1000),
                                       customer=None))
    finally:
        object.__setattr__(spec, "scope", saved)
    assert other["rule_id"] == "scope.order_of_run_customer", other
    assert "order.customer_id == run.customer_id is false" in other["reason"]
    assert own["rule_id"] == "refund.small"
    # No such order, or a run without a customer: undecidable, so blocked (never None == None).
    for decision in (missing, nobody):
        assert decision["rule_id"] == "scope.order_of_run_customer", decision
        assert "could not be decided" in decision["reason"]


# Runs that recover from a refusal -------------------------------------------------------------

GET_1002 = ("get_order", {"order_id": "ORD-10002"})
SMALL = ("create_refund_request", refund("ORD-10002", 4500))


def test_a_replan_rule_hands_the_refusal_to_the_planner(runner: Runner, home: Path,
                                                        variant: Any) -> None:
    ticket = runner.intake("support", tenant_id="acme", email="marcus.oyelaran@example.com",
                           subject="Headphones", body="ORD-10002 broke, please refund $45.00.")
    wf = variant("replan-order-first", planner=lambda: ScriptedPlanner(script=[
        MARCUS, SMALL, GET_1002, SMALL,
        ("add_ticket_note", {"ticket_id": ticket.ticket_id, "body": "Refunded $45.00.",
                             "visibility": "public"})]))
    result = runner.start(wf.name, ticket, requester=REQUESTER)
    assert result.status == "resolved", result.reason
    state = final_state(home, result.run_id)
    refusals = [e for e in state["evidence"].values() if e.get("refusal")]
    assert [r["refusal"]["rule_id"] for r in refusals] == ["refund.order_not_read"]
    assert state["refusals"] == 1
    assert refunds_of(home, result.run_id) == [("ORD-10002", 4500)]
    code, out, err = explain(result.run_id)
    assert code == 0, err
    assert "rule refund.order_not_read [support.toml:" in out
    assert "replan      refused handed to the planner as an observation (refusal 1)" in out
    assert "blocked by gate rule refund.order_not_read (policy " in out
    assert "and handed to the planner" in out


def test_the_refusal_budget_ends_a_run_that_keeps_trying(runner: Runner, home: Path,
                                                         variant: Any) -> None:
    wf = variant("replan-stubborn", planner=lambda: ScriptedPlanner(
        script=[MARCUS, SMALL, SMALL, SMALL, SMALL]))
    result = runner.start(wf.name, sample("TKT-1002"), requester=REQUESTER)
    assert result.status == "blocked"
    assert "refund.order_not_read" in result.reason
    assert "refusal budget of 2 spent" in result.reason
    assert refunds_of(home, result.run_id) == []


def test_a_tools_business_refusal_is_an_outcome_of_its_own(runner: Runner, home: Path,
                                                           variant: Any) -> None:
    wf = variant("tool-refuses", planner=lambda: ScriptedPlanner(
        script=[MARCUS, ("get_order", {"order_id": "ORD-99999"})]))
    result = runner.start(wf.name, sample("TKT-1002"), requester=REQUESTER)
    assert result.status == "refused", result.reason
    assert result.reason == "refused by tool get_order: order ORD-99999 not found"
    evidence = final_state(home, result.run_id)["evidence"]
    assert [e["refusal"]["by"] for e in evidence.values() if e.get("refusal")] == ["tool"]
