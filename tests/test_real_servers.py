"""A small real model on a real server, replayed: llama.cpp serving Gemma 3 270M (recorded in
../shared/fixtures), and adversarial checkers, over HTTP on loopback.

Every run must end honestly (never "resolved" on a reply with no action), every malformed call
is blocked before a tool runs, and a boilerplate "pass" is never taken as a second opinion.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graph.models import ModelSettings
from graph.nodes.plan import NO_ACTION
from graph.observe import price_fn, recorder_factory
from graph.runner import Home, Runner, RunResult
from graph.workflows import get_workflow
from observability import compute_report
from tests.conftest import sample
from tests.fake_openai import RECORDINGS, FakeOpenAI, fake_openai_server

pytestmark = pytest.mark.skipif(not RECORDINGS.exists(),
                                reason=f"the recorded exchanges are not at {RECORDINGS}")
MODEL = "gemma-3-270m"
REQUESTER = "ops@signoff.local"


@pytest.fixture
def priced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SIGNOFF_PRICES table that prices the local model at 0, as an operator would."""
    path = tmp_path / "prices.toml"
    path.write_text(f'[models."{MODEL}"]\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n')
    monkeypatch.setenv("SIGNOFF_PRICES", str(path))
    return path


def local(base_url: str, **options: Any) -> ModelSettings:
    return ModelSettings(provider="openai", model=MODEL, base_url=base_url, api_key="local",
                         timeout_s=10.0, **options)


@pytest.fixture
def runs(home: Path, priced: Path) -> Iterator[Any]:
    """start(fake, planner=..., checker=..., tickets=...) -> results, on one runner per call."""
    opened: list[Runner] = []

    def start(fake: FakeOpenAI, *, planner: ModelSettings | None = None,
              checker: ModelSettings | None = None,
              tickets: tuple[str, ...] = ("TKT-1001",)) -> list[RunResult]:
        runner = Runner(Home(home), planner_settings=planner or ModelSettings(),
                        checker_settings=checker or ModelSettings(),
                        recorder_factory=recorder_factory(), price=price_fn())
        opened.append(runner)
        runner.ensure_domain_db(get_workflow("support"))
        return [runner.start("support", sample(t), requester=REQUESTER) for t in tickets]

    yield start
    for runner in opened:
        runner.close()


ALL_TICKETS = tuple(t.ticket_id for t in get_workflow("support").sample_tickets())


def mutations(home: Path) -> int:
    with sqlite3.connect(home / "support.db") as conn:
        return sum(conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id IS NOT NULL"
                                ).fetchone()[0] for table in ("refunds", "ticket_notes"))


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


# 1. An honest outcome ---------------------------------------------------------------------------

def test_replies_with_no_action_are_asked_again_then_handed_to_a_human(runs: Any,
                                                                       home: Path) -> None:
    with fake_openai_server(planner="replay") as fake:
        results = runs(fake, planner=local(fake.base_url), tickets=ALL_TICKETS)
    assert [r.status for r in results] == ["failed"] * len(ALL_TICKETS)
    no_action = [r for r in results if (r.reason or "").startswith(NO_ACTION)]
    outages = [r for r in results if (r.reason or "").startswith("planner model failed")]
    # 12 recorded replies of debris answer six runs (each asked twice), then the server's
    # recorded dropped connections end the other four.
    assert (len(no_action), len(outages)) == (6, 4)
    assert "<|im_start|>user" in "".join(r.reason or "" for r in no_action)
    assert all(r.usage is not None and r.usage["tool_calls"] == 0 for r in results)
    assert len(fake.requests) == 6 * 2 + 4
    assert mutations(home) == 0
    report = compute_report(home)
    assert report.successful_runs == 0
    assert [v.success_rate for v in report.success_by_version] == [0.0]
    assert report.escalation_reasons == {f"failed: {NO_ACTION}": 6,
                                         "failed: planner model failed": 4}


@pytest.mark.parametrize("reasks", [0, 2])
def test_how_often_a_reply_with_no_action_is_asked_again_is_a_setting(runs: Any,
                                                                      reasks: int) -> None:
    with fake_openai_server(planner="replay") as fake:
        (result,) = runs(fake, planner=local(fake.base_url, reasks=reasks))
    assert (result.reason or "").startswith(f"{NO_ACTION} ({reasks + 1} replies")
    assert len(fake.requests) == reasks + 1
    # The re-ask says what a reply must hold.
    if reasks:
        assert "DONE" in fake.requests[1]["messages"][-1]["content"]


def test_resolved_needs_the_customer_answered_on_the_ticket(runs: Any, home: Path) -> None:
    with fake_openai_server() as fake:
        resolved, status = runs(fake, planner=local(fake.base_url),
                                tickets=("TKT-1001", "TKT-1005"))
    assert (resolved.status, status.status) == ("resolved", "resolved")
    with sqlite3.connect(home / "traces.db") as conn:
        rows = conn.execute("SELECT run_id, verdict, reason FROM decisions"
                            " WHERE kind = 'completion'").fetchall()
    assert sorted(r[0] for r in rows) == sorted([resolved.run_id, status.run_id])
    assert all(r[1] == "pass" and "answered on TKT-" in r[2] for r in rows)
    assert compute_report(home).successful_runs == 2


# 2. What small servers need ----------------------------------------------------------------------

def test_step_tool_choice_names_the_tool_and_a_pattern_drops_the_connection(runs: Any,
                                                                            home: Path) -> None:
    with fake_openai_server(planner="replay") as fake:
        (result,) = runs(fake, planner=local(fake.base_url, tool_choice="step"))
    (request,) = fake.requests
    assert request["tool_choice"] == {"type": "function", "function": {"name": "lookup_customer"}}
    assert "pattern" in _keys(request["tools"])
    assert result.status == "failed"
    assert (result.reason or "").startswith("planner model failed")
    assert mutations(home) == 0


def test_the_plain_schema_dialect_keeps_the_gate_on_the_full_contract(runs: Any,
                                                                      home: Path) -> None:
    with fake_openai_server(planner="replay") as fake:
        results = runs(fake, planner=local(fake.base_url, tool_choice="step",
                                           schema_dialect="plain"), tickets=ALL_TICKETS)
    sent = [_keys(r["tools"]) for r in fake.requests]
    assert sent and not any({"pattern", "format"} & keys for keys in sent)
    # Ids copied from schema descriptions, ids of the wrong kind: all blocked at the gate.
    assert {r.status for r in results} == {"blocked"}
    reasons = [r.reason or "" for r in results]
    # The recorded answers: ids copied from the schema's description ("e.g. CUS-0001") and
    # the previous ticket's customer, each blocked before any tool ran.
    assert sum(r.startswith("gate args.schema: arguments for lookup_customer fail its "
                            "schema: email") for r in reasons) == 5, reasons
    assert sum(r.startswith("gate scope: email ") and r.endswith("is not the ticket's customer")
               for r in reasons) == 5, reasons
    assert all(r.usage is not None and r.usage["tool_calls"] == 0 for r in results)
    assert mutations(home) == 0
    assert compute_report(home).successful_runs == 0


def test_required_tool_choice_is_sent_as_required(runs: Any) -> None:
    with fake_openai_server(planner="replay") as fake:
        (result,) = runs(fake, planner=local(fake.base_url, tool_choice="required"))
    assert fake.requests[0]["tool_choice"] == "required"
    assert result.status == "failed" and "planner model failed" in (result.reason or "")


@pytest.mark.parametrize("content_calls", [True, False])
def test_a_tool_call_written_in_the_text_is_read_when_enabled(runs: Any, home: Path,
                                                              content_calls: bool) -> None:
    with fake_openai_server(calls_in_content=True) as fake:
        (result,) = runs(fake, planner=local(fake.base_url, content_tool_calls=content_calls))
    if content_calls:
        assert result.status == "resolved", result.reason
        assert result.mutations == 2
    else:
        assert result.status == "failed"
        assert (result.reason or "").startswith(NO_ACTION)
        assert mutations(home) == 0


def test_a_tool_call_in_the_text_still_passes_the_whole_gate(runs: Any, home: Path) -> None:
    with fake_openai_server(calls_in_content=True) as fake:
        (result,) = runs(fake, planner=local(fake.base_url), tickets=("TKT-1003",))
    assert result.status == "blocked"  # a $740 refund is red by policy, however it was asked
    assert mutations(home) == 0


# 3. A second opinion that can be checked ----------------------------------------------------------

@pytest.mark.parametrize("checker", ["replay", "boilerplate"])
def test_a_pass_with_boilerplate_and_no_reads_is_a_block(runs: Any, home: Path,
                                                         checker: str) -> None:
    with fake_openai_server(checker=checker) as fake:
        (result,) = runs(fake, checker=local(fake.base_url))
    assert result.status == "blocked"
    assert "the checker's pass is not a second opinion" in (result.reason or "")
    assert "did not say which order_id it read" in (result.reason or "")
    assert mutations(home) == 0
    asked = [r["tools"][0]["function"]["parameters"]["properties"]["read"]["required"]
             for r in fake.requests]
    assert asked == [["customer_id", "order_id", "amount_cents"]]


def test_recorded_boilerplate_reasons_are_named(runs: Any) -> None:
    with fake_openai_server(checker="replay") as fake:
        (result,) = runs(fake, checker=local(fake.base_url))
    assert "copies the verdict schema's description" in (result.reason or "")


def test_a_checker_that_copies_the_call_still_meets_the_rule_checks(runs: Any,
                                                                    home: Path) -> None:
    with fake_openai_server(checker="copycat") as fake:
        legit, over, other = runs(fake, checker=local(fake.base_url),
                                  tickets=("TKT-1001", "TKT-1007", "TKT-1006"))
    # Reads that agree with the call stand; what they cannot see, the rules still block.
    assert legit.status == "resolved"
    assert over.status == "blocked" and "exceeds the refundable balance" in (over.reason or "")
    assert other.status == "blocked" and "another customer" in (other.reason or "")
