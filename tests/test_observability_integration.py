"""Traces and the audit log as a real run writes them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from graph.runner import Runner
from observability import compute_report, search_traces, verify_audit
from tests.conftest import sample


def all_bytes(home: Path, name: str) -> bytes:
    with sqlite3.connect(home / name) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return b"".join(p.read_bytes() for p in home.glob(f"{name}*"))


def test_a_run_is_traced_with_redacted_pii_and_an_intact_audit_chain(runner: Runner,
                                                                      home: Path) -> None:
    ticket = sample("TKT-1002")
    paused = runner.start("support", ticket, requester="ops@signoff.local")
    done = runner.decide(paused.run_id, {"action": "approve", "by": "lead@acme.example",
                                         "reason": "receipt checked"})
    assert done.status == "resolved"

    with sqlite3.connect(home / "traces.db") as conn:
        tools = [r[0] for r in conn.execute(
            "SELECT tool FROM tool_calls WHERE run_id = ? ORDER BY at", (done.run_id,))]
        kinds = {r[0] for r in conn.execute(
            "SELECT kind FROM decisions WHERE run_id = ?", (done.run_id,))}
        approvals = conn.execute(
            "SELECT actor, verdict FROM decisions WHERE run_id = ? AND kind = 'approval'",
            (done.run_id,)).fetchall()
        evidence = conn.execute("SELECT COUNT(*) FROM evidence WHERE run_id = ?",
                                (done.run_id,)).fetchone()[0]
    assert tools == ["lookup_customer", "get_order", "create_refund_request", "add_ticket_note"]
    assert {"gate", "verify_rules", "verify_model", "approval", "postcheck"} <= kinds
    assert approvals == [("lead@acme.example", "approve")]
    assert evidence > 0

    # The customer's email and name are in the ticket and the tool results; never in the file.
    raw = all_bytes(home, "traces.db") + all_bytes(home, "audit.db")
    assert ticket.customer_email and ticket.customer_email.encode() not in raw
    assert b"Marcus" not in raw

    verification = verify_audit(home)
    assert verification.ok and verification.entries_checked > 5
    (found,) = search_traces(home, run_id=done.run_id)
    assert found["outcome"] == "resolved"


def test_tampering_with_the_audit_log_is_detected_by_the_cli(runner: Runner, home: Path) -> None:
    runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    ok = CliRunner().invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "intact" in ok.output
    with sqlite3.connect(home / "audit.db") as conn:
        table = next(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '%audit%'"))
        conn.execute(f"UPDATE {table} SET payload = replace(payload, '1800', '9900')"
                     " WHERE rowid = (SELECT rowid FROM " + table + " WHERE payload LIKE '%1800%'"
                     " LIMIT 1)")
    bad = CliRunner().invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1
    assert "tampered" in bad.output


def test_report_counts_every_sample_outcome(runner: Runner, home: Path) -> None:
    from graph.workflows import get_workflow

    for ticket in get_workflow("support").sample_tickets():
        runner.start("support", ticket, requester="ops@signoff.local")
    report = compute_report(home)
    (line,) = report.success_by_version
    assert (line.workflow, line.finished, line.resolved) == ("support", 9, 4)
    assert report.escalation_reasons["blocked: gate scope"] == 2
    assert report.tool_call_success_rate == 1.0
    assert report.postcheck_pass_rate == 1.0
