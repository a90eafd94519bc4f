"""Time travel never pays twice: replaying or forking a run from an earlier checkpoint re-runs
execute, and the ledger answers with the recorded result instead of applying it again.
Run under the in-memory, the SQLite and the PostgreSQL checkpointer (the last with the run
registry on PostgreSQL too)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command, StateSnapshot

from checkpoints.saver import DURABILITY, thread_config
from graph.context import RunContext
from graph.factory import build_graph
from graph.runner import Home, Runner, initial_inputs
from graph.workflows import get_workflow
from tests.conftest import CHECKPOINTERS
from tests.domain_grid import domain_rows

WORKFLOW = get_workflow("support")
TICKETS = {t.ticket_id: t for t in WORKFLOW.sample_tickets()}
REQUESTER = "agent@acme.example"
APPROVE = {"action": "approve", "by": "lead@acme.example", "reason": "receipt checked"}


class Direct:
    """Drives the compiled graph directly, as a replaying operator would, with the same run
    context the runner builds."""

    def __init__(self, home: Home, ticket_id: str) -> None:
        self.home = home
        self.runner = Runner(home)
        self.ticket = TICKETS[ticket_id]
        self.db = self.runner.domain_connection(WORKFLOW, self.ticket.tenant_id)
        self.run_id = f"run-replay-{ticket_id.lower()}"
        policy, error = self.runner.load_policy(WORKFLOW)
        planner, checker = self.runner._models(WORKFLOW)
        self.ctx = RunContext(
            run_id=self.run_id, tenant_id=self.ticket.tenant_id, requester=REQUESTER,
            workflow=WORKFLOW, registry=WORKFLOW.tools(), policy=policy, policy_error=error,
            planner=planner, checker=checker, db=self.db, runs=self.runner.runs)
        self.config = thread_config(self.run_id)

    def compile(self, saver: BaseCheckpointSaver[Any]) -> None:
        self.graph = build_graph().compile(checkpointer=saver)

    def close(self) -> None:
        self.runner.close()  # closes the domain connection it handed out

    def invoke(self, payload: Any, config: Any = None) -> dict[str, Any]:
        return self.graph.invoke(payload, config or self.config, context=self.ctx,
                                 durability=DURABILITY)

    def start(self) -> dict[str, Any]:
        return self.invoke(initial_inputs(self.run_id, self.ticket, time.time()))

    def history(self) -> list[StateSnapshot]:
        return list(self.graph.get_state_history(self.config))  # type: ignore[arg-type]

    def before_execute(self, tool: str) -> StateSnapshot:
        """The latest checkpoint whose next step executes `tool`."""
        return next(s for s in self.history() if s.next == ("execute",)
                    and (s.values.get("proposal") or {}).get("tool") == tool)

    def rows(self) -> dict[str, int]:
        return {table: domain_rows(self.home, "support",
                                   f"SELECT COUNT(*) FROM {table} WHERE run_id = ?",
                                   (self.run_id,))[0][0]
                for table in ("refunds", "ticket_notes", "mutation_ledger")}


@pytest.fixture(params=CHECKPOINTERS)
def direct(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Direct]]:
    with ExitStack() as stack:
        home = Home(tmp_path)
        if request.param == "postgres":
            from tests.pg import pg_schemas

            url, prefix = stack.enter_context(pg_schemas())
            home = Home(tmp_path, database_url=url, schema_prefix=prefix)
            with closing(home.open_backend()) as backend:
                backend.upgrade()
        runner = Runner(home)
        runner.ensure_domain_db(WORKFLOW, reset=True)
        runner.close()

        def make(ticket_id: str) -> Direct:
            run = Direct(home, ticket_id)
            stack.callback(run.close)
            run.compile(InMemorySaver() if request.param == "memory"
                        else stack.enter_context(run.runner.checkpointer()))
            return run

        yield make


ONCE = {"refunds": 1, "ticket_notes": 1, "mutation_ledger": 2}


def test_replaying_from_before_the_refund_does_not_refund_again(
        direct: Callable[[str], Direct]) -> None:
    run = direct("TKT-1001")
    assert run.start()["outcome"] == "resolved"
    assert run.rows() == ONCE
    old = run.before_execute("create_refund_request")
    again = run.invoke(None, old.config)
    assert again["outcome"] == "resolved"
    assert run.rows() == ONCE
    # The replayed step saw the recorded refund, not a new one.
    refund_ids = {s.values["last_call"]["result"]["refund_id"] for s in run.history()
                  if (s.values.get("last_call") or {}).get("tool") == "create_refund_request"}
    assert len(refund_ids) == 1


def test_replaying_the_whole_run_from_its_first_checkpoint_changes_nothing(
        direct: Callable[[str], Direct]) -> None:
    run = direct("TKT-1001")
    run.start()
    first = [s for s in run.history() if s.next == ("plan",)][-1]  # before the first plan
    assert first.values["step"] == 0 and not first.values["evidence"]
    assert run.invoke(None, first.config)["outcome"] == "resolved"
    assert run.rows() == ONCE


def test_a_fork_with_update_state_does_not_apply_a_committed_mutation_again(
        direct: Callable[[str], Direct]) -> None:
    run = direct("TKT-1001")
    run.start()
    old = run.before_execute("add_ticket_note")
    forked = run.graph.update_state(old.config, {"plan_note": "forked by an operator"})
    assert forked["configurable"]["checkpoint_id"] != old.config["configurable"]["checkpoint_id"]
    assert run.invoke(None, forked)["outcome"] == "resolved"
    assert run.rows() == ONCE


def test_replaying_an_approval_from_the_waiting_checkpoint_refunds_once(
        direct: Callable[[str], Direct]) -> None:
    run = direct("TKT-1002")
    run.start()
    waiting = run.graph.get_state(run.config)
    assert waiting.interrupts
    assert run.invoke(Command(resume=APPROVE))["outcome"] == "resolved"
    assert run.rows() == ONCE
    # The same approval applied again on the old waiting checkpoint: a fork, same action.
    assert run.invoke(Command(resume=APPROVE), waiting.config)["outcome"] == "resolved"
    assert run.rows() == ONCE


def test_the_tool_runs_again_without_the_ledger(direct: Callable[[str], Direct],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The control for the tests above: replay really re-executes the node, so only the ledger
    # stands between a replay and a second refund.
    import uuid

    import graph.nodes.execute as execute_node

    run = direct("TKT-1001")
    run.start()
    monkeypatch.setattr(execute_node, "idempotency_key", lambda *a: uuid.uuid4().hex)
    run.invoke(None, run.before_execute("create_refund_request").config)
    assert run.rows()["refunds"] == 2


def test_a_fork_that_changes_a_judged_call_is_refused_at_execute(
        direct: Callable[[str], Direct]) -> None:
    # An operator forks the run just before the refund executes and raises the amount in
    # state: the gate and the verifier judged $18.00, so execute refuses the changed call.
    run = direct("TKT-1001")
    run.start()
    before = run.rows()
    old = run.before_execute("create_refund_request")
    proposal = dict(old.values["proposal"])
    proposal["args"] = {**proposal["args"], "amount_cents": 4500}
    forked = run.graph.update_state(old.config, {"proposal": proposal})
    final = run.invoke(None, forked)
    assert final["outcome"] == "blocked"
    assert final["reason"] == "the call changed after the gate and the verifier judged it"
    assert run.rows() == before
