"""Hostile text never crashes a command: no rich markup read from data, invalid UTF-8 and
control characters refused in one line, a bounded subject, and tickets filed by several
processes at once all get ids."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from graph.errors import BadDecision
from graph.runner import Runner
from graph.workflows import get_workflow
from tests.conftest import sample

EMAIL = "dana.whitfield@example.com"  # a customer of tenant acme in the sample database
MARKUP = "[/] [bold]not markup[/bold] [link=http://x]y[/link] [/red]"


def signoff(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SIGNOFF_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True,
                          input=stdin, timeout=120)


def test_markup_in_a_subject_and_body_is_printed_as_text(home: Path) -> None:
    cli = CliRunner()
    ran = cli.invoke(app, ["run", "--text", f"Where is ORD-10001? {MARKUP}", "--email", EMAIL,
                           "--subject", MARKUP])
    assert ran.exit_code == 0, ran.output
    assert "Traceback" not in ran.output
    run_id = ran.output.split()[1].rstrip(":")
    status = cli.invoke(app, ["status", run_id])
    assert status.exit_code == 0, status.output
    assert "Traceback" not in status.output
    listed = cli.invoke(app, ["runs"])
    assert listed.exit_code == 0 and run_id in listed.output


def test_markup_in_a_requester_and_a_reason_is_printed_as_text(home: Path) -> None:
    cli = CliRunner()
    ran = cli.invoke(app, ["run", "TKT-1002", "--as", "ops[/]@signoff.local"])
    assert ran.exit_code == 0, ran.output
    run_id = ran.output.split()[1].rstrip(":")
    assert "ops[/]@signoff.local" in cli.invoke(app, ["status", run_id]).output
    rejected = cli.invoke(app, ["reject", run_id, "--as", "lead@acme.example",
                                "--reason", MARKUP])
    assert rejected.exit_code == 0, rejected.output
    assert MARKUP in cli.invoke(app, ["status", run_id]).output


def test_invalid_utf8_on_the_command_line_is_one_line_and_files_nothing(home: Path) -> None:
    before = signoff(home, "runs")
    assert before.returncode == 0, before.stderr
    env = {**os.environ, "SIGNOFF_HOME": str(home)}
    bad = os.fsencode("Where is ORD-10001?") + b" \xff\xfe"
    result = subprocess.run([os.fsencode(sys.executable), b"-m", b"cli", b"run", b"--text", bad,
                             b"--email", EMAIL.encode()], env=env, capture_output=True,
                            timeout=120)
    err = result.stderr.decode(errors="replace").strip()
    assert result.returncode != 0
    assert err == "error: the ticket text is not valid UTF-8", err
    with sqlite3.connect(home / "support.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM tickets WHERE ticket_id >= 'TKT-5001'"
                            ).fetchone()[0] == 0


@pytest.mark.parametrize("args, message", [
    (["--subject", "x" * 201], "the subject is longer than 200 characters"),
    (["--subject", "two\nlines"], "the subject must be one line"),
    (["--subject", "nul\x00here"], "the subject holds a control character (U+0000)"),
])
def test_a_subject_is_bounded_and_one_line(home: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["run", "--text", "Where is ORD-10001?", "--email", EMAIL,
                                      *args])
    assert result.exit_code != 0
    assert result.output.strip() == f"error: {message}"


@pytest.mark.parametrize("decision, message", [
    ({"action": "reject", "by": "lead@acme.example", "reason": "bad \udcff bytes"},
     "reason: Input should be a valid string, unable to parse raw data as a unicode"),
    ({"action": "reject", "by": "lead@acme.example", "reason": "nul\x00"},
     "the reason holds a control character"),
    ({"action": "edit", "by": "lead@acme.example", "args": {"reason": "a\udc80"}},
     "argument reason is not valid UTF-8"),

    ({"action": "edit", "by": "lead@acme.example", "args": {"amount_cents": "9000"}},
     "edited arguments fail create_refund_request's schema: amount_cents: Input should be a "
     "valid integer"),
    ({"action": "edit", "by": "lead@acme.example", "args": {"amount_cents": True}},
     "amount_cents: Input should be a valid integer"),
])
def test_unreadable_text_in_a_decision_is_refused(runner: Runner, decision: dict,
                                                  message: str) -> None:
    run_id = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local").run_id
    with pytest.raises(BadDecision, match=message):
        runner.decide(run_id, decision)
    assert runner.runs.get(run_id).status == "waiting_approval"


def test_tickets_filed_at_the_same_moment_all_get_ids(runner: Runner, home: Path) -> None:
    """Eight writers with their own connections, released together, ten times over: every
    ticket gets its own id (a read-then-insert outside the write lock collides here)."""
    support = get_workflow("support")
    runner.ensure_domain_db(support)
    writers, rounds = 8, 10
    barrier = threading.Barrier(writers)
    errors: list[str] = []

    def file_tickets(i: int) -> None:
        conn = support.open_db(home / "support.db")
        try:
            for r in range(rounds):
                barrier.wait()
                try:
                    support.intake(conn, tenant_id="acme", email=EMAIL, subject="s",
                                   body=f"Where is ORD-10001? ({i}/{r})")
                except Exception as exc:  # noqa: BLE001 - the assertion reports it
                    errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(file_tickets, range(writers)))
    assert errors == []
    with sqlite3.connect(home / "support.db") as conn:
        ids = [r[0] for r in conn.execute("SELECT ticket_id FROM tickets WHERE body LIKE "
                                          "'Where is ORD-10001? (%'")]
    assert len(ids) == len(set(ids)) == writers * rounds


def test_cli_runs_filed_at_once_all_get_ids(runner: Runner, home: Path) -> None:
    runner.ensure_domain_db(get_workflow("support"))

    def file_one(i: int) -> subprocess.CompletedProcess:
        return signoff(home, "run", "--text", f"Where is ORD-10001? [{i}]", "--email", EMAIL)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(file_one, range(4)))
    for result in results:
        assert result.returncode == 0, result.stderr.decode()
