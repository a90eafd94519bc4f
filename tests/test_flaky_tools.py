"""Flaky tools: transient errors are retried with backoff within the policy's retry budget;
past it the run falls back to a human; a slow tool runs into the wall-time budget; no failure
ever leaves half a mutation behind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from graph.runner import Home, Runner, RunResult
from graph.workflows import get_workflow
from tests.domain_grid import domain_rows
from tools.base import ToolContext, ToolSpec, TransientToolError
from tools.support import FaultPlan

WORKFLOW = get_workflow("support")
TICKETS = {t.ticket_id: t for t in WORKFLOW.sample_tickets()}
RETRY_BUDGET = 4  # verifiers/policies/support.toml [budgets] retries
WALL_BUDGET_S = 600


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Drive:
    home: Home
    clock: FakeClock = field(default_factory=FakeClock)
    backoffs: list[float] = field(default_factory=list)

    def run(self, ticket_id: str, tool_faults: Any) -> RunResult:
        runner = Runner(self.home, tool_faults=tool_faults, clock=self.clock,
                        sleep=self.backoffs.append)
        try:
            return runner.start("support", TICKETS[ticket_id], requester="agent@acme.example")
        finally:
            runner.close()

    def rows(self, run_id: str, table: str) -> int:
        return int(domain_rows(self.home, "support", f"SELECT COUNT(*) FROM {table} WHERE "
                               "run_id = ?", (run_id,))[0][0])

    def usage(self, run_id: str) -> dict[str, Any]:
        from checkpoints.saver import open_checkpointer, thread_config

        with open_checkpointer(self.home.checkpoints_db) as saver:
            saved = saver.get_tuple(thread_config(run_id))  # type: ignore[arg-type]
        assert saved is not None
        return dict(saved.checkpoint["channel_values"]["usage"])


def seeded_drive(home: Home) -> Drive:
    runner = Runner(home)
    runner.ensure_domain_db(WORKFLOW, reset=True)
    runner.close()
    return Drive(home)


@pytest.fixture
def drive(tmp_path: Path) -> Drive:
    return seeded_drive(Home(tmp_path))


@pytest.fixture
def backend_drive(backend_home: Home) -> Drive:
    """`drive` on each backend of the grid, for the tests about what a failure leaves in the
    domain data and the ledger."""
    return seeded_drive(backend_home)


def test_transient_failures_within_budget_are_retried_with_backoff(drive: Drive) -> None:
    result = drive.run("TKT-1001", FaultPlan(fail_first={"get_order": 2,
                                                          "create_refund_request": 2}))
    assert result.status == "resolved"
    assert drive.rows(result.run_id, "refunds") == 1
    assert drive.rows(result.run_id, "mutation_ledger") == 2
    assert drive.usage(result.run_id)["retries"] == 4
    # Exponential backoff, restarting for each call.
    assert drive.backoffs == [0.05, 0.1, 0.05, 0.1]


def test_past_the_retry_budget_the_run_falls_back_with_no_mutation(backend_drive: Drive) -> None:
    result = backend_drive.run("TKT-1001", FaultPlan(fail_first={"create_refund_request": 99}))
    assert result.status == "failed"
    assert result.reason is not None
    assert f"create_refund_request kept failing after {RETRY_BUDGET} retries" in result.reason
    assert backend_drive.rows(result.run_id, "refunds") == 0
    assert backend_drive.rows(result.run_id, "mutation_ledger") == 0
    assert backend_drive.rows(result.run_id, "ticket_notes") == 0
    assert len(backend_drive.backoffs) == RETRY_BUDGET


def test_the_retry_budget_is_per_run_not_per_call(drive: Drive) -> None:
    # Three retries on the lookup leave one for the order: its second failure ends the run.
    result = drive.run("TKT-1001", FaultPlan(fail_first={"lookup_customer": 3, "get_order": 2}))
    assert result.status == "failed"
    assert result.reason is not None and "get_order kept failing after 1 retries" in result.reason
    assert drive.rows(result.run_id, "refunds") == 0


@dataclass(frozen=True)
class FailAfterWriting:
    """A tool back-end that writes its row, then loses the connection before answering:
    the worst case for a partial mutation."""

    tool: str
    failures: int

    def apply(self, spec: ToolSpec) -> ToolSpec:
        if spec.name != self.tool:
            return spec
        calls = {"n": 0}
        inner: Callable[[ToolContext, Any], BaseModel] = spec.run

        def run(ctx: ToolContext, args: Any) -> BaseModel:
            calls["n"] += 1
            answer = inner(ctx, args)  # the row is written inside the ledger transaction
            if calls["n"] <= self.failures:
                raise TransientToolError(f"{self.tool}: connection reset after the write")
            return answer

        return replace(spec, run=run)


def test_a_failure_after_the_write_leaves_no_partial_mutation(backend_drive: Drive) -> None:
    retried = backend_drive.run("TKT-1001", FailAfterWriting("create_refund_request", failures=2))
    assert retried.status == "resolved"
    assert backend_drive.rows(retried.run_id, "refunds") == 1  # two rolled back, one committed

    exhausted = backend_drive.run("TKT-1004",
                                  FailAfterWriting("create_refund_request", failures=99))
    assert exhausted.status == "failed"
    assert backend_drive.rows(exhausted.run_id, "refunds") == 0
    assert backend_drive.rows(exhausted.run_id, "mutation_ledger") == 0


def test_a_slow_tool_within_the_wall_budget_only_costs_time(drive: Drive) -> None:
    plan = FaultPlan(slow_seconds={"get_order": 120}, sleep=drive.clock.advance)
    result = drive.run("TKT-1001", plan)
    assert result.status == "resolved"
    assert drive.rows(result.run_id, "refunds") == 1


def test_a_tool_too_slow_for_the_wall_budget_stops_the_run_before_it_mutates(
        drive: Drive) -> None:
    # The order lookup answers after 11 minutes: the refund it would lead to is never gated
    # green, the run is handed to a human, nothing is written.
    plan = FaultPlan(slow_seconds={"get_order": WALL_BUDGET_S + 60}, sleep=drive.clock.advance)
    result = drive.run("TKT-1001", plan)
    assert result.status == "blocked"
    assert result.reason is not None and "budget.wall_seconds" in result.reason
    assert drive.rows(result.run_id, "refunds") == 0
    assert drive.rows(result.run_id, "mutation_ledger") == 0


def test_a_slow_mutation_commits_once_and_the_next_step_is_stopped(drive: Drive) -> None:
    # An authorised mutation is not abandoned half-way: it commits (once); the wall budget
    # then stops the run at its next gate.
    plan = FaultPlan(slow_seconds={"create_refund_request": WALL_BUDGET_S + 60},
                     sleep=drive.clock.advance)
    result = drive.run("TKT-1001", plan)
    assert result.status == "blocked"
    assert result.reason is not None and "budget.wall_seconds" in result.reason
    assert drive.rows(result.run_id, "refunds") == 1
    assert drive.rows(result.run_id, "ticket_notes") == 0
