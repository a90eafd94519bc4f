"""Time waiting for a human is not the agent's: the wall-clock budget leaves it out. And a run
stopped between a refund and the customer's note says so plainly."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tests.conftest import sample
from tools.support.faults import FaultPlan
from verifiers.policy import load_policy

APPROVE = {"action": "approve", "by": "lead@acme.example", "reason": "receipt checked"}
BUDGET_S = load_policy(get_workflow("support").policy_path).budgets.wall_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_approval_after_the_budgets_length_still_finishes_the_action(home: Path) -> None:
    clock = Clock()
    runner = Runner(Home(home), clock=clock)
    try:
        runner.ensure_domain_db(get_workflow("support"), reset=True)
        held = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local")
        assert held.status == "waiting_approval"
        clock.now += BUDGET_S + 3600  # the approver took an hour more than the whole budget
        done = runner.decide(held.run_id, APPROVE)
    finally:
        runner.close()
    # Before: the refund committed, then the customer's note was "blocked (1 mutation)".
    assert (done.status, done.mutations) == ("resolved", 2), done.reason


def test_the_agents_own_time_still_counts(home: Path) -> None:
    clock = Clock()

    def slow_lookup(seconds: float) -> None:
        clock.now += BUDGET_S + 1  # the agent itself ran past its budget

    runner = Runner(Home(home), clock=clock,
                    tool_faults=FaultPlan(slow_seconds={"lookup_customer": 1.0},
                                          sleep=slow_lookup))
    try:
        runner.ensure_domain_db(get_workflow("support"), reset=True)
        result = runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    finally:
        runner.close()
    assert result.status == "blocked", result.reason
    assert "budget.wall_seconds" in (result.reason or ""), result.reason


def test_a_run_stopped_between_a_refund_and_its_note_says_so(home: Path) -> None:
    runner = Runner(Home(home))

    def kill_switch_during_the_refund(seconds: float) -> None:
        # An operator stops the workflow while the refund is being made: it commits, and the
        # next gate (the customer's note) stops the run.
        runner.runs.set_kill("support", by="ops@signoff.local", reason="incident")

    runner.tool_faults = FaultPlan(slow_seconds={"create_refund_request": 1.0},
                                   sleep=kill_switch_during_the_refund)
    try:
        runner.ensure_domain_db(get_workflow("support"), reset=True)
        result = runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    finally:
        runner.close()
    assert (result.status, result.mutations) == ("blocked", 1), result.reason
    assert "STOPPED PART-WAY: 1 change(s) already committed (create_refund_request) but the " \
           "rest of the action did not run (the customer got no answer on TKT-1001" \
           in (result.reason or "")
    assert "a human must finish or undo it" in (result.reason or "")
    status = CliRunner().invoke(app, ["status", result.run_id]).output
    assert "STOPPED PART-WAY" in status
