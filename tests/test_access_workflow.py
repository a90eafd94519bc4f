"""The access workflow: every sample request ends as it says; a yellow grant waits for an
approver from another role than the requester's, and resumes in a new runner or through a
real `signoff approve` subprocess, committing exactly once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from graph.approvals import check_decision
from graph.errors import BadDecision
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from verifiers.policy import load_policy

ACCESS = get_workflow("access")
REQUESTS = {t.ticket_id: t for t in ACCESS.sample_tickets()}
OPERATOR = "ops@signoff.local"
SECURITY, SRE = "mei.tan@corp.example", "sam.reyes@corp.example"


@pytest.fixture
def access_runner(home: Path) -> Iterator[Runner]:
    r = Runner(Home(home))
    r.ensure_domain_db(ACCESS, reset=True)
    yield r
    r.close()


def grants_of(home: Path, run_id: str) -> list[tuple[str, str, str]]:
    with sqlite3.connect(home / "access.db") as conn:
        return conn.execute("SELECT employee_id, system_id, level FROM grants WHERE run_id = ?",
                            (run_id,)).fetchall()


def live(home: Path, employee_id: str, system_id: str) -> list[str]:
    with sqlite3.connect(home / "access.db") as conn:
        return [r[0] for r in conn.execute(
            "SELECT level FROM grants WHERE employee_id = ? AND system_id = ? AND revoked_at IS"
            " NULL ORDER BY level", (employee_id, system_id))]


@pytest.mark.parametrize("request_id", sorted(REQUESTS))
def test_sample_request_reaches_expected_outcome(access_runner: Runner, home: Path,
                                                 request_id: str) -> None:
    ticket = REQUESTS[request_id]
    result = access_runner.start("access", ticket, requester=OPERATOR)
    assert result.status == ticket.expect["outcome"], result.reason
    assert result.mutations == len(ticket.expect["mutations"])


def test_red_actions_are_blocked_by_policy_and_change_nothing(access_runner: Runner,
                                                              home: Path) -> None:
    prod = access_runner.start("access", REQUESTS["REQ-3003"], requester=OPERATOR)
    assert prod.reason and prod.reason.startswith("gate grant.production")
    assert live(home, "EMP-0004", "payments-db") == []
    admin = access_runner.start("access", REQUESTS["REQ-3004"], requester=OPERATOR)
    assert admin.reason and admin.reason.startswith("gate revoke.admin")
    assert live(home, "EMP-0005", "ci-runners") == ["admin"]


def test_green_revoke_commits_and_postcondition_holds(access_runner: Runner,
                                                      home: Path) -> None:
    assert live(home, "EMP-0005", "analytics-staging") == ["write"]
    done = access_runner.start("access", REQUESTS["REQ-3007"], requester=OPERATOR)
    assert done.status == "resolved"
    assert live(home, "EMP-0005", "analytics-staging") == []


def test_requester_role_is_recorded_with_the_run(access_runner: Runner) -> None:
    paused = access_runner.start("access", REQUESTS["REQ-3005"], requester=OPERATOR)
    assert access_runner.runs.get(paused.run_id).requester_role == "sre"


def test_same_role_approver_is_refused_and_the_run_keeps_waiting(access_runner: Runner,
                                                                 home: Path) -> None:
    paused = access_runner.start("access", REQUESTS["REQ-3005"], requester=OPERATOR)
    assert paused.status == "waiting_approval"
    with pytest.raises(BadDecision, match="requester's role 'sre'"):
        access_runner.decide(paused.run_id, {"action": "approve", "by": SRE})
    assert access_runner.runs.get(paused.run_id).status == "waiting_approval"
    assert grants_of(home, paused.run_id) == []
    done = access_runner.decide(paused.run_id, {"action": "approve", "by": SECURITY})
    assert done.status == "resolved"
    assert grants_of(home, paused.run_id) == [("EMP-0006", "ci-runners", "write")]


def test_approval_in_a_second_runner_resumes_and_commits_once(home: Path,
                                                              access_runner: Runner) -> None:
    paused = access_runner.start("access", REQUESTS["REQ-3002"], requester=OPERATOR)
    assert paused.pending and paused.pending["proposal"]["tool"] == "grant_access"
    assert grants_of(home, paused.run_id) == []
    second = Runner(Home(home))  # a new process's view: new context, same data directory
    try:
        done = second.decide(paused.run_id, {"action": "approve", "by": SRE, "reason": "ok"})
    finally:
        second.close()
    assert done.status == "resolved" and done.mutations == 2
    assert grants_of(home, paused.run_id) == [("EMP-0004", "analytics-staging", "read")]
    assert live(home, "EMP-0004", "analytics-staging") == ["read"]


def test_approval_through_a_real_signoff_subprocess(home: Path, access_runner: Runner) -> None:
    paused = access_runner.start("access", REQUESTS["REQ-3002"], requester=OPERATOR)
    refused = CliRunner().invoke(app, ["approve", paused.run_id, "--as", OPERATOR])
    assert refused.exit_code == 1 and "error: " in refused.output
    assert "Traceback" not in refused.output
    assert access_runner.runs.get(paused.run_id).status == "waiting_approval"
    env = {**os.environ, "SIGNOFF_HOME": str(home)}
    approved = subprocess.run(
        [sys.executable, "-m", "cli", "approve", paused.run_id, "--as", SECURITY,
         "--reason", "manager confirmed"], env=env, capture_output=True, text=True,
        timeout=120)
    assert approved.returncode == 0, approved.stderr
    assert f"run {paused.run_id}: resolved" in approved.stdout
    assert grants_of(home, paused.run_id) == [("EMP-0004", "analytics-staging", "read")]


def test_distinct_role_policy_fails_closed_without_a_requester_role() -> None:
    policy = load_policy(ACCESS.policy_path)
    with pytest.raises(BadDecision, match="role is unknown"):
        check_decision({"action": "approve", "by": SECURITY}, requester=OPERATOR,
                       policy=policy, tenant_id="corp", requester_role=None)
    _, role = check_decision({"action": "approve", "by": SECURITY}, requester=OPERATOR,
                             policy=policy, tenant_id="corp", requester_role="engineer")
    assert role == "security"


def test_support_policy_keeps_approving_without_a_requester_role() -> None:
    support = get_workflow("support")
    _, role = check_decision({"action": "approve", "by": "lead@acme.example"},
                             requester=OPERATOR, policy=load_policy(support.policy_path),
                             tenant_id="acme")
    assert role == "support_lead"


def test_cli_demo_and_run_for_the_access_workflow(home: Path) -> None:
    cli = CliRunner()
    demo = cli.invoke(app, ["demo", "--workflow", "access"])
    assert demo.exit_code == 0, demo.output
    assert demo.output.count("waiting_approval") == 2
    # The printed approver is allowed to decide: the first approver whose role differs.
    assert demo.output.count(f"--as {SECURITY}") == 2
    run = cli.invoke(app, ["run", "--workflow", "access", "REQ-3003"])
    assert run.exit_code == 0 and "blocked" in run.output
    bad = cli.invoke(app, ["run", "--workflow", "access", "REQ-9999"])
    assert bad.exit_code == 1 and "unknown sample ticket 'REQ-9999'" in bad.output
