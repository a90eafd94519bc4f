"""A minimal workflow: name, tools, policy and database, nothing else (issue 17, item 9).

Its defaults are safe: offline it hands the run to a human; with models configured the way a
deployment configures them (an OpenAI-compatible endpoint, here on loopback) it runs end to
end, and it is resolved only because it committed a change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ConfigDict

from graph.context import SampleTicket, Workflow
from graph.defaults import NO_CHECKER, NO_PLANNER, SYSTEM_PROMPT
from graph.models import EVIDENCE_MARK, TICKET_MARK, ModelSettings, ScriptedChatModel, extract_block
from graph.runner import Home, Runner, RunResult
from graph.workflows import _WORKFLOWS, register_workflow
from tests.fake_openai import fake_openai_server
from tools.base import ToolContext, ToolRegistry, ToolSpec
from verifiers.argument_check import scripted_verdict

POLICY = """\
workflow = "mini"
version = "1"
allowed_tools = ["add_note"]

[budgets]
model_calls = 6
tokens = 20000
tool_calls = 3
retries = 1
wall_seconds = 60
money_usd = 0.10

[approvers]
owner = ["owner@acme.example"]

[[rules]]
id = "note.green"
tools = ["add_note"]
tier = "green"
reason = "a note is the agent's to write"
"""


class NoteInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class NoteOutput(BaseModel):
    note_id: int


def add_note(ctx: ToolContext, args: NoteInput) -> NoteOutput:
    cur = ctx.conn.execute("INSERT INTO notes (tenant_id, text, run_id) VALUES (?, ?, ?)",
                           (ctx.tenant_id, args.text, ctx.run_id))
    return NoteOutput(note_id=int(cur.lastrowid or 0))


def notes_registry(faults: Any = None) -> ToolRegistry:
    return ToolRegistry([ToolSpec("add_note", "Write a note.", NoteInput, NoteOutput,
                                  mutates=True, risk="write", run=add_note)])


def build_notes_db(path: Path) -> None:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (note_id INTEGER PRIMARY KEY, tenant_id TEXT, text TEXT,"
                     " run_id TEXT)")
    conn.close()


class NotePlanner(ScriptedChatModel):
    """What the configured model answers: write the ticket's body as a note, then DONE."""

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        ticket = extract_block(messages, TICKET_MARK) or {}
        if extract_block(messages, EVIDENCE_MARK):
            return AIMessage(content="DONE: noted")
        return AIMessage(content="", tool_calls=[{"name": "add_note", "id": "call_1",
                                                  "args": {"text": ticket["body"]}}])


class NoteChecker(ScriptedChatModel):
    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        return scripted_verdict(tools, True, "the note repeats the ticket's body word for word",
                                {})


TICKET = SampleTicket(ticket_id="T-1", tenant_id="acme", customer_id=None, customer_email=None,
                      subject="Remember", body="Call the supplier on Monday.")


@pytest.fixture
def mini(tmp_path: Path) -> Iterator[Workflow]:
    policy = tmp_path / "mini.toml"
    policy.write_text(POLICY)
    workflow = register_workflow(Workflow(name="mini", tools=notes_registry,
                                          policy_path=policy, build_db=build_notes_db))
    yield workflow
    _WORKFLOWS.pop("mini", None)


def notes_of(home: Path, run_id: str) -> list[tuple[str]]:
    with sqlite3.connect(home / "mini.db") as conn:
        return conn.execute("SELECT text FROM notes WHERE run_id = ?", (run_id,)).fetchall()


def test_the_defaults_are_filled_in(mini: Workflow) -> None:
    assert (mini.team, mini.db_filename, mini.version) == ("mini", "mini.db", "0.1.0")
    assert mini.system_prompt == SYSTEM_PROMPT
    assert mini.sample_tickets() == [] and mini.invariants == {} and mini.facts is None


def start_run(home: Path, workflow: Workflow, **runner_options: Any) -> RunResult:
    """Run TICKET on `workflow` with a runner made of `runner_options`."""
    runner = Runner(Home(home), **runner_options)
    runner.ensure_domain_db(workflow)
    try:
        return runner.start(workflow.name, TICKET, requester="ops@acme.example")
    finally:
        runner.close()


def test_offline_a_minimal_workflow_hands_the_run_to_a_human(mini: Workflow, home: Path) -> None:
    result = start_run(home, mini)
    assert result.status == "escalated"
    assert result.reason == f"the planner escalated: {NO_PLANNER}"
    assert notes_of(home, result.run_id) == []


def test_offline_without_a_checker_every_mutation_fails_the_check(
        mini: Workflow, home: Path) -> None:
    result = start_run(home, register_workflow(replace(mini, planner=NotePlanner)))
    assert result.status == "blocked"
    assert NO_CHECKER in result.reason
    assert notes_of(home, result.run_id) == []


def run_with_models(home: Path, workflow: Workflow, planner: ScriptedChatModel,
                    checker: ScriptedChatModel) -> tuple[RunResult, list[dict[str, Any]]]:
    """Run TICKET with planner and checker served over loopback as a configured model is;
    returns the result and the requests the server was sent."""
    with fake_openai_server(models=(planner, checker)) as fake:
        remote = ModelSettings(provider="openai", model="mini-model", base_url=fake.base_url,
                               api_key="test-key")
        result = start_run(home, workflow, planner_settings=remote, checker_settings=remote,
                           price=lambda model, tokens_in, tokens_out: 0.0)
    return result, fake.requests


def test_with_models_configured_a_minimal_workflow_runs_end_to_end(
        mini: Workflow, home: Path) -> None:
    result, requests = run_with_models(home, mini, NotePlanner(), NoteChecker())
    assert result.status == "resolved", result.reason
    assert result.mutations == 1
    assert notes_of(home, result.run_id) == [("Call the supplier on Monday.",)]
    verdicts = [r for r in requests
                if any(t["function"]["name"] == "ArgumentVerdict" for t in r["tools"])]
    assert len(verdicts) == 1  # the mutation was verified by the configured checker


def test_a_minimal_workflow_that_changes_nothing_is_not_resolved(
        mini: Workflow, home: Path) -> None:
    class SaysDone(ScriptedChatModel):
        def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]
                    ) -> AIMessage:
            return AIMessage(content="DONE: nothing to do")

    result, _requests = run_with_models(home, mini, SaysDone(), NoteChecker())
    assert result.status == "failed"
    assert result.reason.startswith("not complete: the run committed no change")
