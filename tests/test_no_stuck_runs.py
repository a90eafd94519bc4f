"""No run is left "running" with nothing driving it: a drive that fails leaves a waiting run
waiting, or ends the run with the reason; and a run remembers the model settings it started
with, so `resume` under other settings says so."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from graph.errors import SignoffError
from graph.observe import recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tests.conftest import sample
from tools.support.faults import FaultPlan

APPROVE = {"action": "approve", "by": "lead@acme.example", "reason": "receipt checked"}


class BackEndCrashed(Exception):
    pass


def crash(seconds: float) -> None:
    raise BackEndCrashed("the payments service fell over")


def crashing_runner(home: Path, tool: str) -> Runner:
    """A runner whose `tool` raises something no tool contract expects."""
    runner = Runner(Home(home), recorder_factory=recorder_factory(),
                    tool_faults=FaultPlan(slow_seconds={tool: 1.0}, sleep=crash))
    runner.ensure_domain_db(get_workflow("support"))
    return runner


def refunds(home: Path) -> int:
    with sqlite3.connect(home / "support.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM refunds").fetchone()[0]


def test_a_run_that_fails_midway_ends_with_the_reason(home: Path) -> None:
    runner = crashing_runner(home, "get_order")
    try:
        with pytest.raises(BackEndCrashed):
            runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
        (record,) = runner.runs.list()
    finally:
        runner.close()
    assert record.status == "failed"
    assert record.reason == "stopped by an error: BackEndCrashed: the payments service fell over"
    assert record.lease_owner is None


def test_an_approval_that_fails_ends_the_run_with_the_reason(home: Path) -> None:
    setup = Runner(Home(home))
    setup.ensure_domain_db(get_workflow("support"), reset=True)
    run_id = setup.start("support", sample("TKT-1002"), requester="ops@signoff.local").run_id
    setup.close()
    before = refunds(home)
    runner = crashing_runner(home, "create_refund_request")
    try:
        with pytest.raises(BackEndCrashed):
            runner.decide(run_id, APPROVE)
        record = runner.runs.get(run_id)
    finally:
        runner.close()
    assert record.status == "failed" and "BackEndCrashed" in (record.reason or "")
    assert refunds(home) == before  # the effect's transaction was rolled back


def test_a_failed_approve_on_the_cli_never_says_running(home: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CliRunner()
    ran = cli.invoke(app, ["run", "TKT-1002", "--as", "ops@signoff.local"])
    run_id = ran.output.split()[1].rstrip(":")
    monkeypatch.setattr(Runner, "_registry", lambda self, wf: wf.tools(
        FaultPlan(slow_seconds={"create_refund_request": 1.0}, sleep=crash)))
    result = cli.invoke(app, ["approve", run_id, "--as", "lead@acme.example"])
    assert result.exit_code == 4, result.output  # an exception no contract expects is a bug
    assert result.stderr.startswith("error: internal error: BackEndCrashed")
    status = cli.invoke(app, ["status", run_id]).output
    assert "status: failed" in status
    assert "why: stopped by an error: BackEndCrashed" in status


def test_a_decision_refused_before_the_drive_keeps_the_run_waiting(runner: Runner,
                                                                   home: Path) -> None:
    run_id = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local").run_id
    held = runner.runs.get(run_id)
    (home / "traces.db").unlink()
    (home / "traces.db").mkdir()  # the trace store cannot open: the drive never starts
    fresh = Runner(Home(home), recorder_factory=recorder_factory())
    try:
        with pytest.raises(SignoffError):
            fresh.decide(run_id, APPROVE)
        after = fresh.runs.get(run_id)
    finally:
        fresh.close()
    assert (after.status, after.reason, after.pending) == (held.status, held.reason, held.pending)


def test_resume_under_other_model_settings_says_so_and_refuses(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_trace_outbox import start_in_child, traced_runner

    traced_runner(home).close()  # the sample data, made before the child starts
    start_in_child(home, kill_at=3)  # started under the default (scripted) settings, then died
    with sqlite3.connect(home / "control.db") as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
    cli = CliRunner()
    monkeypatch.setenv("SIGNOFF_PLANNER_TIMEOUT", "5")
    refused = cli.invoke(app, ["resume", run_id])
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.strip() == (
        f"error: run {run_id} started under other model settings (planner.timeout_s: 30.0 -> "
        "5.0); resume it under the same ones, or pass --with-current-settings")
    assert "status: running" in cli.invoke(app, ["status", run_id]).output
    resumed = cli.invoke(app, ["resume", run_id, "--with-current-settings"])
    assert resumed.exit_code == 0, resumed.output
    assert "resolved" in resumed.output
    runner = Runner(Home(home))
    try:
        assert runner.runs.get(run_id).models["planner"]["timeout_s"] == 5.0
        assert "api_key" not in runner.runs.get(run_id).models["planner"]
    finally:
        runner.close()


def test_a_run_that_cannot_start_leaves_nothing_running(home: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CliRunner()
    assert cli.invoke(app, ["runs"]).exit_code == 0  # the data directory exists
    monkeypatch.setenv("SIGNOFF_PLANNER_PROVIDER", "openai")
    for name in ("OPENAI_API_KEY", "SIGNOFF_PLANNER_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    result = cli.invoke(app, ["run", "TKT-1001"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: an API key is needed for provider 'openai'")
    with sqlite3.connect(home / "control.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
