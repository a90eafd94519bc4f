"""Human approvals: who may decide, what a decision needs, edits going back through gate and
verify, and an approval re-checked against a policy that changed while the run waited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from checkpoints.saver import thread_config
from graph.errors import BadDecision
from graph.factory import build_graph
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tests.conftest import sample
from tests.domain_grid import domain_rows, store_rows

SUPPORT = get_workflow("support")
REQUESTER = "ops@signoff.local"


def refunds_of(home: Home, run_id: str) -> list[tuple[Any, ...]]:
    return domain_rows(home, "support",
                       "SELECT order_id, amount_cents FROM refunds WHERE run_id = ?", (run_id,))


@pytest.fixture
def runner(backend_runner: Runner) -> Runner:
    """Every test here runs on each backend of the grid (SQLite, PostgreSQL)."""
    return backend_runner


def final_state(runner: Runner, run_id: str) -> dict[str, Any]:
    with runner.checkpointer() as saver:
        graph = build_graph().compile(checkpointer=saver)
        return dict(graph.get_state(thread_config(run_id)).values)  # type: ignore[arg-type]


@pytest.fixture
def paused(runner: Runner) -> str:
    result = runner.start("support", sample("TKT-1002"), requester=REQUESTER)
    assert result.status == "waiting_approval", result.reason
    return result.run_id


def assert_still_waiting(runner: Runner, home: Path, run_id: str) -> None:
    assert runner.runs.get(run_id).status == "waiting_approval"
    assert refunds_of(runner.home, run_id) == []


BAD_DECISIONS = [
    ({"action": "approve", "by": "ops@signoff.local"}, "started this run and cannot decide"),
    ({"action": "approve", "by": "OPS@signoff.local "}, "started this run and cannot decide"),
    ({"action": "approve", "by": "mallory@acme.example"}, "is not an approver in policy"),
    ({"action": "approve", "by": "finance@acme.example"},
     "does not hold a role that may decide on this action (needs: support_lead)"),
    ({"action": "reject", "by": "lead@acme.example"}, "a rejection needs a reason"),
    ({"action": "reject", "by": "lead@acme.example", "reason": "   "},
     "a rejection needs a reason"),
    ({"action": "edit", "by": "lead@acme.example"}, "an edit needs args"),
    ({"action": "edit", "by": "lead@acme.example", "args": {"amount_cents": "lots"}},
     "edited arguments fail create_refund_request's schema"),
    ({"action": "edit", "by": "lead@acme.example", "args": {"order_id": "x", "extra": 1}},
     "edited arguments fail"),
    ({"action": "approve", "by": "lead@acme.example", "args": {"amount_cents": 1}},
     "only an edit carries args"),
    ({"action": "yolo", "by": "lead@acme.example"}, "invalid decision"),
]
ON_POSTGRES = (0, 2, 4, 7)
"""The cases also run on PostgreSQL: a self-approval, an unknown approver, a rejection without
a reason, an edit failing the schema. The checks are the runner's, before any store is
written; what the backend adds (the run still waiting, no refund row, a good decision
afterwards) these four show, and each Postgres cell costs a schema upgrade and install."""


@pytest.mark.parametrize("backend_home, decision, message", [
    pytest.param(backend, decision, message, id=f"{backend}-{i}")
    for i, (decision, message) in enumerate(BAD_DECISIONS)
    for backend in ("sqlite", "postgres") if backend == "sqlite" or i in ON_POSTGRES
], indirect=["backend_home"])
def test_bad_decisions_change_nothing(runner: Runner, home: Path, paused: str,
                                      decision: dict[str, Any], message: str) -> None:
    with pytest.raises(BadDecision) as info:
        runner.decide(paused, decision)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert_still_waiting(runner, home, paused)
    # and the run can still be approved properly afterwards
    assert runner.decide(paused, {"action": "approve", "by": "lead@acme.example"}).status \
        == "resolved"


def test_reject_ends_rejected_with_no_mutation(runner: Runner, home: Path, paused: str) -> None:
    result = runner.decide(paused, {"action": "reject", "by": "lead@acme.example",
                                    "reason": "no receipt on file"})
    assert result.status == "rejected" and result.mutations == 0
    assert result.reason == "rejected by lead@acme.example (support_lead): no receipt on file"
    assert refunds_of(runner.home, paused) == []
    approval = final_state(runner, paused)["approval"]
    assert (approval["action"], approval["by"], approval["role"]) == \
        ("reject", "lead@acme.example", "support_lead")


def test_edit_up_past_the_ceiling_is_blocked_red(runner: Runner, home: Path,
                                                 paused: str) -> None:
    result = runner.decide(paused, {"action": "edit", "by": "lead@acme.example",
                                    "args": {"amount_cents": 60000}})
    assert result.status == "blocked"
    assert result.reason and result.reason.startswith("gate refund.over_ceiling:")
    assert refunds_of(runner.home, paused) == []
    state = final_state(runner, paused)
    assert state["proposal"]["origin"] == "human_edit"
    assert state["proposal"]["args"]["amount_cents"] == 60000
    assert (state["gate"]["tier"], state["gate"]["rule_id"]) == ("red", "refund.over_ceiling")


def test_edit_down_is_gated_green_verified_and_executes_once(runner: Runner, home: Path,
                                                             paused: str) -> None:
    result = runner.decide(paused, {"action": "edit", "by": "lead@acme.example",
                                    "reason": "partial refund", "args": {"amount_cents": 4000}})
    assert result.status == "resolved", result.reason
    assert refunds_of(runner.home, paused) == [("ORD-10002", 4000)]
    state = final_state(runner, paused)
    assert state["mutations"] == 2  # the refund and the customer note
    ledger = domain_rows(runner.home, "support", "SELECT COUNT(*) FROM mutation_ledger WHERE"
                         " run_id = ? AND tool = 'create_refund_request'", (paused,))[0][0]
    assert ledger == 1


def test_edit_back_into_yellow_waits_again(runner: Runner, home: Path, paused: str) -> None:
    again = runner.decide(paused, {"action": "edit", "by": "lead@acme.example",
                                   "args": {"amount_cents": 9000}})
    # $90 is still above the automatic limit, but the customer asked for $120: the second
    # model accepts a smaller amount only because a human chose it.
    assert again.status == "waiting_approval", again.reason
    assert again.pending and again.pending["proposal"]["args"]["amount_cents"] == 9000
    assert again.pending["proposal"]["origin"] == "human_edit"
    done = runner.decide(paused, {"action": "approve", "by": "lead@acme.example"})
    assert done.status == "resolved"
    assert refunds_of(runner.home, paused) == [("ORD-10002", 9000)]


def test_approval_records_identity_role_and_policy_version(runner: Runner, home: Path,
                                                           paused: str) -> None:
    runner.decide(paused, {"action": "approve", "by": "lead@acme.example", "reason": "ok"})
    approval = final_state(runner, paused)["approval"]
    policy, _ = runner.load_policy(SUPPORT)
    assert policy is not None
    # The planner clears `approval` when it proposes the next step, so read it from history.
    with runner.checkpointer() as saver:
        graph = build_graph().compile(checkpointer=saver)
        approvals = [s.values["approval"] for s in graph.get_state_history(
            thread_config(paused)) if s.values.get("approval")]  # type: ignore[arg-type]
    assert approval is None and approvals
    assert approvals[0] == {"action": "approve", "by": "lead@acme.example",
                            "role": "support_lead", "reason": "ok",
                            "policy_version": policy.version, "policy_digest": policy.digest}
    rows = store_rows(runner.home, "traces", "SELECT verdict, rule_id, data FROM decisions"
                      " WHERE run_id = ? AND kind = 'approval'", (paused,))
    assert len(rows) == 1 and rows[0][:2] == ("approve", "role:support_lead")
    assert f'"policy_version":"{policy.version}"' in rows[0][2].replace(" ", "")


def stricter_policy(tmp_path: Path) -> Path:
    """The shipped policy with a new version whose ceiling is $100: TKT-1002's $120 is red."""
    text = SUPPORT.policy_path.read_text()
    text = text.replace('version = "2026.12.3"', 'version = "2026.12.0"')
    text = text.replace('when = "args.amount_cents > 50000"', 'when = "args.amount_cents > 10000"')
    path = tmp_path / "stricter.toml"
    path.write_text(text)
    return path


def test_policy_changed_while_waiting_gates_again_before_acting(home: Path, tmp_path: Path,
                                                                runner: Runner,
                                                                paused: str) -> None:
    changed = Runner(runner.home, policy_override=stricter_policy(tmp_path))
    try:
        result = changed.decide(paused, {"action": "approve", "by": "lead@acme.example",
                                         "reason": "looks fine"})
    finally:
        changed.close()
    assert result.status == "blocked"
    assert result.reason and result.reason.startswith("gate refund.over_ceiling:")
    assert refunds_of(runner.home, paused) == []
    state = final_state(runner, paused)
    assert state["approval"]["policy_version"] == "2026.12.0"
    assert (state["gate"]["policy_version"], state["gate"]["rule_id"]) == \
        ("2026.12.0", "refund.over_ceiling")


def test_same_policy_version_does_not_regate(runner: Runner, home: Path, paused: str) -> None:
    runner.decide(paused, {"action": "approve", "by": "lead@acme.example"})
    with runner.checkpointer() as saver:
        graph = build_graph().compile(checkpointer=saver)
        history = list(graph.get_state_history(thread_config(paused)))  # type: ignore[arg-type]
    ran = [t.name for s in reversed(history) for t in s.tasks if t.result is not None]
    after_approve = ran[ran.index("approve") + 1]
    assert after_approve == "execute"
