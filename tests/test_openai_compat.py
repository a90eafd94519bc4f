"""The real-model path: ChatOpenAI against an OpenAI-compatible server on loopback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from graph.models import ModelSettings
from graph.observe import price_fn, recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from observability import search_traces
from tests.conftest import sample
from tests.fake_openai import COMPLETION_TOKENS, PROMPT_TOKENS, fake_openai_server


def openai_runner(home: Path, base_url: str, *, planner: bool, checker: bool) -> Runner:
    remote = ModelSettings(provider="openai", model="gpt-4o-mini", base_url=base_url,
                           api_key="test-key")
    r = Runner(Home(home), planner_settings=remote if planner else ModelSettings(),
               checker_settings=remote if checker else ModelSettings(),
               recorder_factory=recorder_factory(), price=price_fn())
    r.ensure_domain_db(get_workflow("support"), reset=True)
    return r


def test_planner_and_checker_over_http_with_tool_calls_and_usage(home: Path) -> None:
    with fake_openai_server() as fake:
        runner = openai_runner(home, fake.base_url, planner=True, checker=True)
        result = runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    assert result.status == "resolved", result.reason
    assert result.mutations == 2
    planner_calls = [r for r in fake.requests
                     if all(t["function"]["name"] != "ArgumentVerdict" for t in r["tools"])]
    checker_calls = [r for r in fake.requests if r not in planner_calls]
    # lookup, get_order, refund, note, done = 5 planner turns; refund and note are verified.
    assert len(planner_calls) == 5 and len(checker_calls) == 2
    assert {t["function"]["name"] for t in planner_calls[0]["tools"]} == set(
        get_workflow("support").tools().names())
    assert all(r["model"] == "gpt-4o-mini" for r in fake.requests)

    (trace,) = search_traces(home, run_id=result.run_id)
    snapshot = runner.runs.get(result.run_id)
    assert snapshot.status == "resolved"
    # Usage from the HTTP responses reaches the trace's model calls and the price table.
    with sqlite3.connect(home / "traces.db") as conn:
        rows = conn.execute("SELECT node, model, tokens_in, tokens_out FROM model_calls"
                            " WHERE run_id = ?", (result.run_id,)).fetchall()
    assert len(rows) == 7
    assert all(r[1] == "gpt-4o-mini" and (r[2], r[3]) == (PROMPT_TOKENS, COMPLETION_TOKENS)
               for r in rows)
    assert sorted({r[0] for r in rows}) == ["plan", "verify"]
    assert trace["cost_usd"] == pytest.approx(
        7 * (PROMPT_TOKENS * 0.15 + COMPLETION_TOKENS * 0.60) / 1e6)


def test_only_the_checker_can_be_remote(home: Path) -> None:
    with fake_openai_server() as fake:
        runner = openai_runner(home, fake.base_url, planner=False, checker=True)
        result = runner.start("support", sample("TKT-1007"), requester="ops@signoff.local")
    assert result.status == "blocked"
    assert "exceeds" in (result.reason or "")
    assert fake.requests and all(
        r["tools"][0]["function"]["name"] == "ArgumentVerdict" for r in fake.requests)


def test_arguments_that_are_not_json_are_blocked_by_the_gate(home: Path) -> None:
    with fake_openai_server() as fake:
        fake.bad_json_arguments = True
        runner = openai_runner(home, fake.base_url, planner=True, checker=False)
        result = runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    assert result.status == "blocked"
    assert "args.not_json" in (result.reason or "")
    assert result.mutations == 0


def test_unreachable_endpoint_fails_safe(home: Path) -> None:
    runner = openai_runner(home, "http://127.0.0.1:9/v1", planner=True, checker=False)
    result = runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    assert result.status == "failed"
    assert "planner model failed" in (result.reason or "")
