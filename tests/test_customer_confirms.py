"""Approvers the rule names: the run's own customer confirms (issue 17 item 5)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from graph.errors import BadDecision
from graph.runner import Runner
from tests.conftest import sample
from tests.test_gate import POLICY_TEXT
from tests.test_verifier import REQUESTER, refunds_of, variant

__all__ = ["variant"]

MARCUS = "marcus.oyelaran@example.com"  # TKT-1002's customer, asking for $120.00
CONFIRMS = '''[[rules]]
id = "refund.customer_confirms"
tools = ["create_refund_request"]
when = "args.amount_cents > 5000 and args.amount_cents <= 15000"
tier = "yellow"
approvers = ["customer"]
reason = "the customer confirms refunds between $50 and $150 before they are sent"
'''


@pytest.fixture
def confirming(tmp_path: Path, variant: Any) -> Any:
    anchor = '[[rules]]\nid = "refund.needs_approval"'
    text = POLICY_TEXT.replace(anchor, CONFIRMS + "\n" + anchor, 1)
    text = text.replace('workflow = "support"', 'workflow = "support-confirms"', 1)
    path = tmp_path / "confirms.toml"
    path.write_text(text)
    return variant("support-confirms", policy_path=path)


def held(runner: Runner, wf: Any) -> str:
    result = runner.start(wf.name, sample("TKT-1002"), requester=REQUESTER)
    assert result.status == "waiting_approval", result.reason
    assert result.pending is not None
    assert result.pending["gate"]["approver_roles"] == ["customer"]
    return result.run_id


def test_the_runs_customer_confirms_and_the_refund_commits(runner: Runner, home: Path,
                                                           confirming: Any) -> None:
    run_id = held(runner, confirming)
    # A zero-width character and capitals: the same person, compared normalised.
    result = runner.decide(run_id, {"action": "confirm", "by": "Marcus.\u200bOyelaran@example.com",
                                    "reason": "yes please"})
    assert result.status == "resolved", result.reason
    assert refunds_of(home, run_id) == [("ORD-10002", 12000)]
    with sqlite3.connect(home / "traces.db") as conn:
        rows = conn.execute("SELECT verdict, rule_id, actor FROM decisions WHERE run_id = ? AND "
                            "kind = 'approval'", (run_id,)).fetchall()
    assert rows == [("confirm", "role:customer", MARCUS)]


@pytest.mark.parametrize(("decision", "message"), [
    ({"action": "approve", "by": "lead@acme.example"},
     "does not hold a role that may decide on this action (needs: customer)"),
    ({"action": "confirm", "by": "lead@acme.example"},
     "lead@acme.example is not this run's customer"),
    ({"action": "confirm", "by": "dana.whitfield@example.com"},
     "dana.whitfield@example.com is not this run's customer"),
    ({"action": "edit", "by": MARCUS, "args": {"amount_cents": 14000}},
     "the customer confirms or rejects"),
    ({"action": "confirm", "by": REQUESTER}, "started this run and cannot decide on it"),
])
def test_nobody_else_confirms_for_the_customer(runner: Runner, home: Path, confirming: Any,
                                               decision: dict[str, Any], message: str) -> None:
    run_id = held(runner, confirming)
    with pytest.raises(BadDecision) as info:
        runner.decide(run_id, decision)
    assert message in str(info.value)
    assert runner.status(run_id).status == "waiting_approval"
    assert refunds_of(home, run_id) == []


def test_a_confirmation_is_refused_where_an_approver_decides(runner: Runner, home: Path) -> None:
    result = runner.start("support", sample("TKT-1002"), requester=REQUESTER)
    assert result.status == "waiting_approval"
    with pytest.raises(BadDecision) as info:
        runner.decide(result.run_id, {"action": "confirm", "by": MARCUS})
    assert "does not wait for the customer's confirmation" in str(info.value)


def test_the_customer_may_reject(runner: Runner, home: Path, confirming: Any) -> None:
    run_id = held(runner, confirming)
    result = runner.decide(run_id, {"action": "reject", "by": MARCUS,
                                    "reason": "I found the receipt, no refund needed"})
    assert result.status == "rejected"
    assert refunds_of(home, run_id) == []
