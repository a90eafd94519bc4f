"""Model settings per role, spend counted as it happened, and the pieces small servers need:
the schema dialect, tool calls written in the text, and the deterministic verdict comparison."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from typer.testing import CliRunner

from cli.main import app
from graph.errors import SignoffError
from graph.models import (
    EVIDENCE_MARK,
    ModelSettings,
    ScriptedChatModel,
    content_tool_call,
    extract_block,
    schema_for_model,
)
from graph.nodes.plan import NO_ACTION
from graph.observe import price_fn, recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from observability import compute_report
from tests.conftest import sample
from tests.fake_openai import fake_openai_server
from tools.support import support_registry
from verifiers.argument_check import ArgumentVerdict, boilerplate, compare_reads
from verifiers.support import VERDICT_READS, SupportChecker

REQUESTER = "ops@signoff.local"
REFUND_READS = VERDICT_READS["create_refund_request"]
TICKET = {"ticket_id": "TKT-1001", "customer_id": "CUS-0001"}
REFUND = {"order_id": "ORD-10001", "amount_cents": 1800, "reason": "mug broken"}


# Settings, read once at the CLI edge ------------------------------------------------------------

def test_settings_per_role_from_the_environment() -> None:
    env = {"SIGNOFF_PLANNER_PROVIDER": "openai", "SIGNOFF_PLANNER_TIMEOUT": "90",
           "SIGNOFF_PLANNER_RETRIES": "2", "SIGNOFF_PLANNER_REASKS": "0",
           "SIGNOFF_PLANNER_TOOL_CHOICE": "step", "SIGNOFF_PLANNER_SCHEMA": "plain",
           "SIGNOFF_PLANNER_CONTENT_CALLS": "off", "SIGNOFF_CHECKER_TIMEOUT": "5"}
    planner = ModelSettings.from_env("planner", env)
    checker = ModelSettings.from_env("checker", env)
    assert (planner.timeout_s, planner.retries, planner.reasks, planner.tool_choice,
            planner.schema_dialect, planner.content_tool_calls) == (90.0, 2, 0, "step",
                                                                     "plain", False)
    assert (checker.timeout_s, checker.retries, checker.tool_choice) == (5.0, 0, "auto")


@pytest.mark.parametrize("variable, value, expected", [
    ("SIGNOFF_PLANNER_TIMEOUT", "soon", "SIGNOFF_PLANNER_TIMEOUT must be a number of seconds"),
    ("SIGNOFF_PLANNER_TIMEOUT", "0", "SIGNOFF_PLANNER_TIMEOUT must be a number of seconds"),
    ("SIGNOFF_CHECKER_RETRIES", "-1", "SIGNOFF_CHECKER_RETRIES must be a whole number"),
    ("SIGNOFF_PLANNER_REASKS", "1.5", "SIGNOFF_PLANNER_REASKS must be a whole number"),
    ("SIGNOFF_PLANNER_TOOL_CHOICE", "any", "SIGNOFF_PLANNER_TOOL_CHOICE must be one of auto, "
                                           "required, step"),
    ("SIGNOFF_CHECKER_SCHEMA", "lean", "SIGNOFF_CHECKER_SCHEMA must be one of full, plain"),
    ("SIGNOFF_PLANNER_CONTENT_CALLS", "maybe", "SIGNOFF_PLANNER_CONTENT_CALLS must be one of"),
])
def test_a_bad_setting_is_a_one_line_error_naming_the_variable(
        home: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
        expected: str) -> None:
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, ["run", "TKT-1001", "--as", REQUESTER])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {expected}"), line
    assert not (home / "control.db").exists()  # refused before anything was opened


def test_an_unpriced_model_is_refused_before_its_first_call(home: Path) -> None:
    with fake_openai_server() as fake:
        runner = Runner(Home(home), planner_settings=ModelSettings(
            provider="openai", model="gemma-3-270m", base_url=fake.base_url, api_key="local"),
            recorder_factory=recorder_factory(), price=price_fn())
        runner.ensure_domain_db(get_workflow("support"))
        with pytest.raises(SignoffError, match="SIGNOFF_PRICES") as refused:
            runner.start("support", sample("TKT-1001"), requester=REQUESTER)
        assert "planner model 'gemma-3-270m' has no price" in str(refused.value)
        assert runner.runs.list() == []
        runner.close()
    assert fake.requests == []


def test_the_cli_refuses_an_unpriced_model_naming_signoff_prices(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_CHECKER_PROVIDER", "openai")
    monkeypatch.setenv("SIGNOFF_CHECKER_MODEL", "qwen2.5-0.5b-instruct")
    monkeypatch.setenv("SIGNOFF_CHECKER_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    result = CliRunner().invoke(app, ["run", "TKT-1001", "--as", REQUESTER])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == ("error: the checker model 'qwen2.5-0.5b-instruct' has no price: add it to "
                    "the price table that SIGNOFF_PRICES names (a local model can cost 0) "
                    "before running it")


# Spend counted as it happened ---------------------------------------------------------------------

@pytest.mark.parametrize("retries", [0, 1])
def test_the_clients_silent_retries_are_off_and_signoffs_are_counted(home: Path,
                                                                     retries: int) -> None:
    with fake_openai_server(delay_s=1.0) as fake:
        runner = Runner(Home(home), planner_settings=ModelSettings(
            provider="openai", model="gpt-4o-mini", base_url=fake.base_url, api_key="k",
            timeout_s=0.2, retries=retries), recorder_factory=recorder_factory(),
            price=price_fn())
        runner.ensure_domain_db(get_workflow("support"))
        result = runner.start("support", sample("TKT-1001"), requester=REQUESTER)
        runner.close()
        sent = len(fake.requests)
    assert result.status == "failed" and "planner model failed" in (result.reason or "")
    # Every request that went out is one the run counts, and one the trace holds.
    assert sent == retries + 1
    assert result.usage is not None and result.usage["model_calls"] == retries + 1
    with sqlite3.connect(home / "traces.db") as conn:
        rows = conn.execute("SELECT latency_s FROM model_calls WHERE run_id = ?",
                            (result.run_id,)).fetchall()
    assert len(rows) == retries + 1
    assert all(0.15 < latency < 1.0 for (latency,) in rows)  # each waited out the timeout
    assert compute_report(home).model_latency.count == retries + 1


# Honest outcomes with offline planners ---------------------------------------------------------

class LinesPlanner(ScriptedChatModel):
    """Answers the n-th request with `lines[n]`: text, or (tool, args) for a tool call."""

    lines: list[Any]
    asked: list[int] = []

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        self.asked.append(len(extract_block(messages, EVIDENCE_MARK) or []))
        line = self.lines[min(len(self.asked) - 1, len(self.lines) - 1)]
        if isinstance(line, str):
            return AIMessage(content=line)
        return AIMessage(content="", tool_calls=[{"name": line[0], "args": line[1],
                                                  "id": f"c{len(self.asked)}"}])


def run_with(runner: Runner, planner: LinesPlanner, name: str) -> Any:
    import dataclasses

    from graph.workflows import _WORKFLOWS, register_workflow

    wf = register_workflow(dataclasses.replace(get_workflow("support"), name=name,
                                               planner=lambda: planner))
    try:
        return runner.start(wf.name, sample("TKT-1005"), requester=REQUESTER)
    finally:
        _WORKFLOWS.pop(name, None)


LOOKUP = ("lookup_customer", {"email": "aiko.tanaka@example.com"})


def test_a_reask_that_gets_an_action_goes_on(runner: Runner) -> None:
    planner = LinesPlanner(lines=["<|im_start|>user\n", LOOKUP, "ESCALATE: no idea"], asked=[])
    result = run_with(runner, planner, "support-reask")
    assert planner.asked == [0, 0, 1]  # asked again on the same evidence, then went on
    assert result.status == "escalated"
    assert result.reason == "the planner escalated: no idea"


def test_done_without_answering_the_customer_is_not_resolved(runner: Runner) -> None:
    planner = LinesPlanner(lines=[LOOKUP, "DONE: all sorted"], asked=[])
    result = run_with(runner, planner, "support-done-early")
    assert result.status == "failed"
    assert result.reason == ("not complete: the customer got no answer on TKT-1005 (no public "
                             "note from this run) (the planner said: all sorted)")


def test_debris_twice_is_the_planner_giving_no_action(runner: Runner) -> None:
    planner = LinesPlanner(lines=["<|im_start|>user\n"], asked=[])
    result = run_with(runner, planner, "support-debris")
    assert result.status == "failed"
    assert result.reason == f"{NO_ACTION} (2 replies; the last: '<|im_start|>user')"
    assert result.usage["model_calls"] == 2


# Schema dialect and calls in text ---------------------------------------------------------------

def test_the_plain_dialect_drops_pattern_and_format_but_keeps_property_names() -> None:
    schema = {"type": "object", "properties": {
        "email": {"type": "string", "pattern": "^.+@.+$", "format": "email"},
        "pattern": {"type": "string", "format": "date"}}, "required": ["email", "pattern"]}
    assert schema_for_model(schema, "full") is schema
    assert schema_for_model(schema, "plain") == {"type": "object", "properties": {
        "email": {"type": "string"}, "pattern": {"type": "string"}},
        "required": ["email", "pattern"]}
    sent = [schema_for_model(spec.openai_schema(), "plain") for spec in support_registry()]
    assert "pattern" not in str(sent)
    assert "pattern" in str([spec.openai_schema() for spec in support_registry()])


@pytest.mark.parametrize("content, expected", [
    ('{"name": "get_order", "arguments": {"order_id": "ORD-10001"}}',
     ("get_order", {"order_id": "ORD-10001"})),
    ('Sure!\n```json\n{"name": "get_order", "arguments": "{\\"order_id\\": \\"ORD-1\\"}"}\n```',
     ("get_order", {"order_id": "ORD-1"})),
    ('<tool_call>{"function": {"name": "get_order", "arguments": "{not json"}}</tool_call>',
     ("get_order", None)),
    ('{"name": "drop_tables", "arguments": {}}', None),
    ("DONE: nothing to do", None),
])
def test_a_tool_call_in_the_text(content: str, expected: Any) -> None:
    found = content_tool_call(content, ["get_order", "lookup_customer"])
    assert (found and (found["name"], found["args"])) == (expected or None)


# The verdict comparison ------------------------------------------------------------------------

def verdict(reason: str, **read: Any) -> ArgumentVerdict:
    return ArgumentVerdict(verdict="pass", reason=reason, read=read)


def test_a_pass_whose_reads_agree_and_reason_names_them_stands() -> None:
    good = verdict("ORD-10001 is the ticket's order and $18.00 is what was asked",
                   customer_id="CUS-0001", order_id="ord-10001 ", amount_cents="1800")
    assert compare_reads(good, REFUND_READS, TICKET, REFUND) == []


def test_reads_that_disagree_with_the_call_are_named() -> None:
    over = {**REFUND, "amount_cents": 40000}
    bad = verdict("ORD-10001: $45.00 asked for", customer_id="CUS-0007",
                  order_id="ORD-10001", amount_cents=4500)
    assert compare_reads(bad, REFUND_READS, TICKET, over) == [
        "it read customer_id 'CUS-0007' but the call has 'CUS-0001'",
        "it read amount_cents 4500 but the call has 40000"]
    # An approver's partial refund is below what the customer asked: that stands.
    partial = {**REFUND, "amount_cents": 1000}
    asked = verdict("ORD-10001, $18.00 asked", customer_id="CUS-0001", order_id="ORD-10001",
                    amount_cents=1800)
    assert compare_reads(asked, REFUND_READS, TICKET, partial, origin="human_edit") == []
    assert compare_reads(asked, REFUND_READS, TICKET, partial) == [
        "it read amount_cents 1800 but the call has 1000"]


@pytest.mark.parametrize("reason, why", [
    ("", "its reason is empty"),
    ("Looks good.", "is boilerplate"),
    ("one sentence: why", "copies the verdict schema's description"),
    ("the order is ok, the order is ok, the order is ok", "repeats itself"),
])
def test_boilerplate_reasons(reason: str, why: str) -> None:
    assert why in (boilerplate(reason) or "")


def test_a_reason_that_names_nothing_read_is_not_a_second_opinion() -> None:
    vague = verdict("The customer seems to deserve it.", customer_id="CUS-0001",
                    order_id="ORD-10001", amount_cents=1800)
    assert compare_reads(vague, REFUND_READS, TICKET, REFUND) == [
        "its reason names none of what it read"]


def test_the_offline_checker_fills_its_reads_and_they_are_compared(runner: Runner) -> None:
    from verifiers.argument_check import check_arguments

    ticket = {**TICKET, "customer_email": "dana.whitfield@example.com",
              "subject": "Mug arrived broken", "body": "ORD-10001 smashed. Refund $18.00?"}
    evidence = [
        {"tool": "lookup_customer", "args": {"email": "dana.whitfield@example.com"},
         "result": {"customer_id": "CUS-0001", "email": "dana.whitfield@example.com"},
         "error": None},
        {"tool": "get_order", "args": {"order_id": "ORD-10001"},
         "result": {"order_id": "ORD-10001", "customer_id": "CUS-0001", "total_cents": 4500,
                    "refundable_cents": 4500, "payments": [{}]}, "error": None}]
    passed = check_arguments(SupportChecker(), "offline", ticket, evidence,
                             "create_refund_request", REFUND, reads=REFUND_READS)
    assert passed.ok, passed.reason
    read = SupportChecker.reads(ticket, evidence, "create_refund_request",
                                {**REFUND, "amount_cents": 40000}, False)
    assert read == {"customer_id": "CUS-0001", "order_id": "ORD-10001", "amount_cents": 1800}
    blocked = check_arguments(SupportChecker(), "offline", ticket, evidence,
                              "create_refund_request", {**REFUND, "amount_cents": 40000},
                              reads=REFUND_READS)
    assert not blocked.ok
