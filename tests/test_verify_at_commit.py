"""Verify at commit: the invariants and the tier rules run again inside the ledger's
transaction, against the database as it is then, for every mutation. What verify found
before an approval pause is what the approver saw; the commit-time pass decides."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from checkpoints.saver import DURABILITY, open_checkpointer, thread_config
from cli.main import app
from graph.context import RunContext, SampleTicket
from graph.factory import build_graph
from graph.runner import Home, Runner, RunResult, initial_inputs
from graph.workflows import get_workflow
from tests.domain_grid import domain_connection, domain_rows

SUPPORT, ACCESS = get_workflow("support"), get_workflow("access")
REQUESTER = "ops@signoff.local"
APPROVE = {"action": "approve", "by": "lead@acme.example", "reason": "receipt checked"}
MARCUS = "marcus.oyelaran@example.com"  # ORD-10002: $149.00 paid, nothing refunded
CHLOE = "chloe.brooks.25@example.com"  # ORD-10048: $205.00 paid, nothing refunded


def ask(runner: Runner, email: str, body: str) -> SampleTicket:
    return runner.intake("support", tenant_id="acme", email=email, subject="Refund please",
                         body=body)


def run(runner: Runner, email: str, body: str) -> RunResult:
    return runner.start("support", ask(runner, email, body), requester=REQUESTER)


def refunded(home: Home, order_id: str) -> int:
    return int(domain_rows(home, "support", "SELECT COALESCE(SUM(amount_cents), 0) FROM "
                           "refunds WHERE order_id = ?", (order_id,))[0][0])


def held_refund(runner: Runner, amount: str = "$120.00") -> str:
    result = run(runner, MARCUS, f"My headphones from order ORD-10002 broke. Please refund "
                                 f"{amount} to my card.")
    assert result.status == "waiting_approval", result.reason
    return result.run_id


def test_two_held_refunds_approved_one_after_the_other(backend_runner: Runner,
                                                      backend_home: Home, home: Path) -> None:
    runner = backend_runner
    first, second = held_refund(runner), held_refund(runner)
    assert runner.decide(first, APPROVE).status == "resolved"
    blocked = runner.decide(second, APPROVE)
    # Verify passed both when they were held ($120 <= $149 then); at commit $29 was left.
    assert blocked.status == "blocked" and blocked.mutations == 0
    assert blocked.reason == ("verify at commit: refund.within_refundable_balance: amount "
                              "$120.00 exceeds the refundable balance $29.00 (paid minus "
                              "already refunded)")
    assert refunded(backend_home, "ORD-10002") == 12000
    keys = domain_rows(backend_home, "support", "SELECT COUNT(*) FROM mutation_ledger WHERE "
                       "run_id = ? AND tool = 'create_refund_request'", (second,))[0][0]
    assert keys == 0  # nothing committed: neither the effect nor its key

    status = CliRunner().invoke(app, ["status", second])
    assert "verify at commit: refund.within_refundable_balance" in status.stdout
    explained = CliRunner().invoke(app, ["policy", "explain", second]).stdout
    assert "invariant   pass    refund.within_refundable_balance: amount $120.00 <= " \
           "refundable balance $149.00" in explained  # what the approver saw
    assert "at commit   fail    refund.within_refundable_balance: amount $120.00 exceeds " \
           "the refundable balance $29.00" in explained
    assert "=> blocked at commit by refund.within_refundable_balance (nothing committed)" \
        in explained
    if backend_home.database_url:
        return  # the files below are SQLite's; `policy explain` above read the same records
    with sqlite3.connect(home / "traces.db") as conn:
        rows = conn.execute("SELECT verdict, rule_id FROM decisions WHERE run_id = ? AND "
                            "kind = 'verify_commit'", (second,)).fetchall()
    assert ("fail", "refund.within_refundable_balance") in rows
    with sqlite3.connect(home / "audit.db") as conn:
        audit = " ".join(str(r) for r in conn.execute("SELECT * FROM audit").fetchall())
    assert "verify_commit" in audit and "refund.within_refundable_balance" in audit


def test_hold_then_an_automatic_refund_then_the_approval(backend_runner: Runner,
                                                        backend_home: Home) -> None:
    runner, home = backend_runner, backend_home
    waiting = held_refund(runner)
    small = run(runner, MARCUS, "Order ORD-10002: the case is scratched. Please refund $40.00.")
    assert small.status == "resolved" and refunded(home, "ORD-10002") == 4000
    blocked = runner.decide(waiting, APPROVE)
    assert blocked.status == "blocked"
    assert blocked.reason and blocked.reason.startswith(
        "verify at commit: refund.within_refundable_balance: amount $120.00 exceeds the "
        "refundable balance $109.00")
    assert refunded(home, "ORD-10002") == 4000


def test_two_processes_approving_two_runs_at_once_never_over_refund(
        backend_runner: Runner, backend_home: Home, home: Path) -> None:
    runner = backend_runner
    runs = [held_refund(runner), held_refund(runner)]
    runner.close()  # the two processes own the data now (the CLI sees backend_home's URL)
    env = {**os.environ, "SIGNOFF_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-m", "cli", "approve", run_id, "--as",
                               "lead@acme.example", "--reason", "ok"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for run_id in runs]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    statuses = sorted(Runner(backend_home).runs.get(r).status for r in runs)
    assert statuses == ["blocked", "resolved"], outputs
    assert refunded(backend_home, "ORD-10002") == 12000  # one $120, never $240 on $149


def test_an_aggregate_that_went_stale_after_the_gate_is_read_again_at_commit(
        backend_runner: Runner, backend_home: Home, home: Path) -> None:
    runner = backend_runner
    # Drive one run up to its refund's execute, let another run commit on the same order in
    # between (as a second worker would), then let the first commit.
    ticket = ask(runner, CHLOE, "The lid on order ORD-10048 is cracked. Please refund $49.00.")
    policy, error = runner.load_policy(SUPPORT)
    planner, checker = runner._models(SUPPORT)
    with domain_connection(backend_home, "support", "acme") as db:
        ctx = RunContext(run_id="run-stale", tenant_id="acme", requester=REQUESTER,
                         workflow=SUPPORT, registry=SUPPORT.tools(), policy=policy,
                         policy_error=error, planner=planner, checker=checker, db=db,
                         runs=runner.runs)
        with open_checkpointer(home / "checkpoints.db") as saver:
            graph = build_graph().compile(checkpointer=saver, interrupt_before=["execute"])
            config = thread_config("run-stale")
            payload: Any = initial_inputs("run-stale", ticket, time.time())
            while True:
                graph.invoke(payload, config, context=ctx, durability=DURABILITY)
                state = graph.get_state(config)  # type: ignore[arg-type]
                payload = None
                if (state.values.get("proposal") or {}).get("tool") == "create_refund_request":
                    break
            assert state.next == ("execute",)
            assert state.values["gate"]["tier"] == "green"
            assert state.values["gate"]["aggregates"] == {"refunded_on_order_30d": 0}

            other = run(runner, CHLOE, "Order ORD-10048: a handle came off. Please refund "
                                       "$30.00.")
            assert other.status == "resolved" and refunded(backend_home, "ORD-10048") == 3000

            graph.invoke(None, config, context=ctx, durability=DURABILITY)
            final = graph.get_state(config).values  # type: ignore[arg-type]
    assert final["outcome"] == "blocked"
    assert final["reason"].startswith("verify at commit: refund.cumulative_on_order: the call "
                                      "would now be held for approval")
    assert "refunded_on_order_30d = 3000" in final["reason"]
    assert "it was gated green by refund.small" in final["reason"]
    assert refunded(backend_home, "ORD-10048") == 3000


def test_the_access_workflow_checks_its_invariants_at_commit_too(backend_home: Home) -> None:
    runner = Runner(backend_home)
    try:
        runner.ensure_domain_db(ACCESS, reset=True)
        request = next(t for t in ACCESS.sample_tickets() if t.ticket_id == "REQ-3002")
        first = runner.start("access", request, requester=REQUESTER)
        second = runner.start("access", request, requester=REQUESTER)
        assert first.status == second.status == "waiting_approval"
        approve = {"action": "approve", "by": "sam.reyes@corp.example", "reason": "ok"}
        assert runner.decide(first.run_id, approve).status == "resolved"
        blocked = runner.decide(second.run_id, approve)
    finally:
        runner.close()
    assert blocked.status == "blocked"
    assert blocked.reason and blocked.reason.startswith(
        "verify at commit: access.no_duplicate_grant: EMP-0004 already holds read on "
        "analytics-staging")
    live = domain_rows(backend_home, "access", "SELECT COUNT(*) FROM grants WHERE employee_id ="
                       " 'EMP-0004' AND system_id = 'analytics-staging' AND revoked_at IS NULL")
    assert live[0][0] == 1


def test_an_approval_covers_only_a_rule_its_role_may_approve(backend_home: Home,
                                                             tmp_path: Path,
                                                             backend_runner: Runner) -> None:
    # Any approver may approve a large refund, but once the order has a refund, only a
    # support lead may: finance approves while the order has none; by the time it commits,
    # another refund landed, and the rule deciding now is not one finance may approve.
    text = SUPPORT.policy_path.read_text()
    text = text.replace('reason = "refunds above $50.00 need a support lead\'s approval"\n'
                        'approvers = ["support_lead"]', 'reason = "refunds above $50.00 need '
                        'an approval"')
    text = text.replace('when = "aggregates.refunded_on_order_30d + args.amount_cents > 5000"',
                        'when = "aggregates.refunded_on_order_30d > 0"')
    order = text.index('[[rules]]\nid = "refund.cumulative_on_order"')
    needs = text.index('[[rules]]\nid = "refund.needs_approval"')
    cumulative = text[order:text.index("[[rules]]", order + 1)]
    text = text.replace(cumulative, "")
    text = text[:needs] + cumulative + text[needs:]
    policy = tmp_path / "roles.toml"
    policy.write_text(text)
    strict = Runner(backend_home, policy_override=policy)
    try:
        waiting = held_refund(strict)
        assert strict.runs.get(waiting).reason == \
            "held by refund.needs_approval: refunds above $50.00 need an approval"
        small = run(strict, MARCUS, "Order ORD-10002: the case is scratched. Please refund "
                                    "$10.00.")
        assert small.status == "resolved"
        blocked = strict.decide(waiting, {"action": "approve", "by": "finance@acme.example",
                                          "reason": "ok"})
    finally:
        strict.close()
    assert blocked.status == "blocked"
    assert blocked.reason and blocked.reason.startswith(
        "verify at commit: refund.cumulative_on_order: approved as finance, but the rule "
        "deciding now needs support_lead")
    assert refunded(backend_home, "ORD-10002") == 1000
