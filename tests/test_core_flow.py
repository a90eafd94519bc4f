"""The runnable core: every sample ticket ends as its ticket says, under both checkpointers,
and an approval resumes a paused run that then commits exactly once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

from graph.context import RunContext
from graph.factory import build_graph
from graph.runner import Home, Runner, initial_inputs
from graph.workflows import get_workflow
from tests.conftest import CHECKPOINTERS, checkpointer, sample
from tests.domain_grid import domain_rows
from verifiers.policy import load_policy

SUPPORT = get_workflow("support")
TICKETS = SUPPORT.sample_tickets()


@pytest.fixture
def runner(backend_runner: Runner) -> Runner:
    """Every test here runs on each backend of the grid (SQLite, PostgreSQL)."""
    return backend_runner


def refunds_of(home: Home, run_id: str) -> list[tuple[Any, ...]]:
    return domain_rows(home, "support",
                       "SELECT order_id, amount_cents FROM refunds WHERE run_id = ?", (run_id,))


@pytest.mark.parametrize("ticket", TICKETS, ids=[t.ticket_id for t in TICKETS])
def test_sample_ticket_reaches_expected_outcome(runner: Runner, home: Path, ticket) -> None:
    result = runner.start("support", ticket, requester="ops@signoff.local")
    assert result.status == ticket.expect["outcome"], result.reason
    committed = runner.runs.get(result.run_id)
    assert committed.status == result.status
    refunds = refunds_of(runner.home, result.run_id)
    assert bool(refunds) == ("create_refund_request" in ticket.expect["mutations"])


def test_blocked_run_commits_nothing_and_says_why(runner: Runner, home: Path) -> None:
    result = runner.start("support", sample("TKT-1007"), requester="ops@signoff.local")
    assert result.status == "blocked"
    assert "refundable balance" in (result.reason or "")
    assert refunds_of(runner.home, result.run_id) == []


def test_approval_resumes_and_commits_exactly_once(runner: Runner, home: Path) -> None:
    paused = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local")
    assert paused.status == "waiting_approval"
    assert paused.pending and paused.pending["proposal"]["tool"] == "create_refund_request"
    assert refunds_of(runner.home, paused.run_id) == []

    done = runner.decide(paused.run_id, {"action": "approve", "by": "lead@acme.example",
                                         "reason": "receipt checked"})
    assert done.status == "resolved"
    assert refunds_of(runner.home, paused.run_id) == [("ORD-10002", 12000)]


# The same interrupt/resume, driven directly on the compiled graph, under each checkpointer.

@pytest.mark.parametrize("kind", CHECKPOINTERS)
def test_interrupt_then_resume_under_each_checkpointer(kind: str, runner: Runner,
                                                       home: Path) -> None:
    ticket = sample("TKT-1002")
    db = runner.domain_connection(SUPPORT, "acme")
    runs = runner.runs
    ctx = RunContext(run_id="run-grid", tenant_id="acme", requester="ops@signoff.local",
                     workflow=SUPPORT, registry=SUPPORT.tools(),
                     policy=load_policy(SUPPORT.policy_path), policy_error=None,
                     planner=SUPPORT.planner(), checker=SUPPORT.checker(), db=db, runs=runs)
    inputs = initial_inputs("run-grid", ticket, time.time())
    config = {"configurable": {"thread_id": "run-grid"}}
    try:
        with checkpointer(kind, home / "grid-checkpoints.db") as saver:
            graph = build_graph().compile(checkpointer=saver)
            first = graph.invoke(inputs, config, context=ctx, durability="sync")
            assert "__interrupt__" in first
            assert graph.get_state(config).next == ("approve",)
            final = graph.invoke(Command(resume={"action": "approve", "by": "lead@acme.example"}),
                                 config, context=ctx, durability="sync")
            assert final["outcome"] == "resolved"
            assert final["mutations"] == 2
        assert refunds_of(runner.home, "run-grid") == [("ORD-10002", 12000)]
    finally:
        db.close()
