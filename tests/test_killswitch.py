"""The kill switch: it stops runs in flight at their next gate, again in execute, and a paused
run approved after it was set; `--all` covers every workflow; `unkill` restores."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel
from typer.testing import CliRunner

from checkpoints.runs import ALL_WORKFLOWS
from checkpoints.saver import thread_config
from cli.main import app
from graph import workflows
from graph.context import Workflow
from graph.factory import build_graph
from graph.runner import Home, Runner
from graph.workflows import get_workflow, register_workflow
from tests.conftest import run_store, sample, saver_of
from tests.domain_grid import domain_rows
from tools.base import ToolContext, ToolSpec
from verifiers.support import SupportChecker

SUPPORT = get_workflow("support")
REQUESTER = "ops@signoff.local"


def rows(home: Home, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return domain_rows(home, "support", sql, params)


def refunds_of(home: Path, run_id: str) -> list[tuple[Any, ...]]:
    return rows(home, "SELECT order_id, amount_cents FROM refunds WHERE run_id = ?", run_id)


def final_state(home: Home, run_id: str) -> dict[str, Any]:
    with saver_of(home) as saver:
        graph = build_graph().compile(checkpointer=saver)
        return dict(graph.get_state(thread_config(run_id)).values)  # type: ignore[arg-type]


def set_kill(home: Home, scope: str, reason: str = "refund bug, investigating") -> str:
    with run_store(home) as store:
        store.set_kill(scope, by="oncall@acme.example", reason=reason)
        return store.kill_reason(SUPPORT.name if scope == ALL_WORKFLOWS else scope) or ""


@pytest.fixture
def runner(backend_runner: Runner) -> Runner:
    """Every test here runs on each backend of the grid (SQLite, PostgreSQL)."""
    return backend_runner


@pytest.fixture
def copy_workflow() -> Iterator[Workflow]:
    """A second registered workflow (a copy of support under another name)."""
    wf = register_workflow(dataclasses.replace(SUPPORT, name="support-shadow"))
    yield wf
    workflows._WORKFLOWS.pop(wf.name, None)


def test_paused_run_approved_after_kill_ends_blocked_with_no_refund(runner: Runner,
                                                                    home: Path) -> None:
    paused = runner.start("support", sample("TKT-1002"), requester=REQUESTER)
    assert paused.status == "waiting_approval"
    reason = set_kill(runner.home, "support")
    assert reason == ("kill switch for workflow support set by oncall@acme.example: "
                      "refund bug, investigating")
    result = runner.decide(paused.run_id, {"action": "approve", "by": "lead@acme.example",
                                           "reason": "receipt checked"})
    assert result.status == "blocked" and result.reason == reason
    assert result.mutations == 0
    assert refunds_of(runner.home, paused.run_id) == []
    assert rows(runner.home, "SELECT COUNT(*) FROM mutation_ledger WHERE run_id = ?",
                paused.run_id) == [(0,)]
    assert runner.runs.get(paused.run_id).status == "blocked"


def test_kill_for_one_workflow_leaves_others_running(runner: Runner, home: Path,
                                                     copy_workflow: Workflow) -> None:
    set_kill(runner.home, "support")
    stopped = runner.start("support", sample("TKT-1001"), requester=REQUESTER)
    assert stopped.status == "blocked" and "workflow support" in (stopped.reason or "")
    other = runner.start(copy_workflow.name, sample("TKT-1001"), requester=REQUESTER)
    assert other.status == "resolved", other.reason


def test_kill_all_covers_every_workflow_and_unkill_restores(runner: Runner, home: Path,
                                                            copy_workflow: Workflow) -> None:
    cli = CliRunner()
    done = cli.invoke(app, ["kill", "--all", "--reason", "incident 42", "--as", "oncall@x"])
    assert done.exit_code == 0, done.output
    for name in ("support", copy_workflow.name):
        result = runner.start(name, sample("TKT-1001"), requester=REQUESTER)
        assert result.status == "blocked", (name, result.reason)
        assert result.reason == ("gate kill_switch: kill switch for all workflows set by "
                                 "oncall@x: incident 42")
        assert final_state(runner.home, result.run_id)["gate"]["rule_id"] == "kill_switch"
        assert refunds_of(runner.home, result.run_id) == []

    cleared = cli.invoke(app, ["unkill", "--all"])
    assert cleared.exit_code == 0 and "cleared for all workflows" in cleared.stdout
    runner.ensure_domain_db(SUPPORT, reset=True)
    for name in ("support", copy_workflow.name):
        assert runner.start(name, sample("TKT-1001"), requester=REQUESTER).status == "resolved"

    again = cli.invoke(app, ["unkill", "--all"])
    assert again.exit_code == 1 and again.stderr.startswith("error: no kill switch is set")


def test_kill_and_unkill_need_exactly_one_scope(backend_home: Home) -> None:
    cli = CliRunner()
    cli.invoke(app, ["runs"])  # creates the data directory
    for args in (["kill"], ["kill", "--all", "--workflow", "support"],
                 ["kill", "--workflow", "nope"]):
        result = cli.invoke(app, args)
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, args
    with run_store(backend_home) as store:
        assert store.kill_switches() == []


@dataclass
class KillOnFirstLookup:
    """A tool wrapper that sets the kill switch while the run's first tool call executes."""

    home: Home

    def apply(self, spec: ToolSpec) -> ToolSpec:
        if spec.name != "lookup_customer":
            return spec
        inner = spec.run

        def run(ctx: ToolContext, args: Any) -> BaseModel:
            set_kill(self.home, "support", reason="set mid-run")
            return inner(ctx, args)

        return dataclasses.replace(spec, run=run)


def test_run_in_flight_stops_at_its_next_gate(home: Path, backend_home: Home) -> None:
    runner = Runner(backend_home, tool_faults=KillOnFirstLookup(backend_home))
    try:
        runner.ensure_domain_db(SUPPORT, reset=True)
        result = runner.start("support", sample("TKT-1001"), requester=REQUESTER)
    finally:
        runner.close()
    assert result.status == "blocked"
    assert result.reason and result.reason.startswith("gate kill_switch:")
    state = final_state(backend_home, result.run_id)
    assert [e["tool"] for e in state["evidence"].values()] == ["lookup_customer"]
    assert state["proposal"]["tool"] == "get_order"
    assert refunds_of(backend_home, result.run_id) == []


@dataclass
class KillBeforeCommit:
    """A fault hook that sets the kill switch just before the run's first mutation commits."""

    home: Home

    def before_commit(self, run_id: str, step: int, tool: str) -> None:
        set_kill(self.home, "support", reason="set during a commit")


def test_a_mutation_already_authorized_commits_and_nothing_after_it(
        home: Path, backend_home: Home) -> None:
    runner = Runner(backend_home, faults=KillBeforeCommit(backend_home))
    try:
        runner.ensure_domain_db(SUPPORT, reset=True)
        result = runner.start("support", sample("TKT-1001"), requester=REQUESTER)
    finally:
        runner.close()
    assert result.status == "blocked"
    assert result.reason and result.reason.startswith("gate kill_switch:")
    assert refunds_of(backend_home, result.run_id) == [("ORD-10001", 1800)]
    assert rows(backend_home, "SELECT COUNT(*) FROM ticket_notes WHERE run_id = ?",
                result.run_id) == [(0,)]


class KillingChecker(SupportChecker):
    """The second model, which (as a test seam) sets the kill switch while it checks: so the
    switch is set after the gate passed the call and before execute runs it."""

    home: Home

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        set_kill(self.home, "support-killcheck", reason="between gates")
        return super().respond(messages, tools)


def test_execute_checks_the_switch_again(home: Path, backend_home: Home) -> None:
    wf = register_workflow(dataclasses.replace(
        SUPPORT, name="support-killcheck",
        checker=lambda: KillingChecker(home=backend_home)))
    runner = Runner(backend_home)
    try:
        runner.ensure_domain_db(SUPPORT, reset=True)
        result = runner.start(wf.name, sample("TKT-1001"), requester=REQUESTER)
    finally:
        runner.close()
        workflows._WORKFLOWS.pop(wf.name, None)
    assert result.status == "blocked"
    assert result.reason == ("kill switch for workflow support-killcheck set by "
                             "oncall@acme.example: between gates")
    state = final_state(backend_home, result.run_id)
    assert state["gate"]["rule_id"] == "refund.small"  # the gate had passed it
    assert state["verdict"]["ok"] is True
    assert refunds_of(backend_home, result.run_id) == []


def test_status_says_when_a_kill_switch_holds_or_ended_a_run(backend_home: Home) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    cli = CliRunner()
    held = cli.invoke(app, ["run", "TKT-1002", "--as", "ops@signoff.local"])
    run_id = held.output.split()[1].rstrip(":")
    assert cli.invoke(app, ["kill", "--workflow", "support", "--reason", "refund bug"]
                      ).exit_code == 0
    waiting = cli.invoke(app, ["status", run_id]).output
    assert ("held by a kill switch for workflow support set by " in waiting
            and ": refund bug: nothing this run does commits until it is cleared" in waiting)
    cli.invoke(app, ["approve", run_id, "--as", "lead@acme.example"])
    ended = cli.invoke(app, ["status", run_id]).output
    assert "status: blocked" in ended and "ended by a kill switch" in ended
