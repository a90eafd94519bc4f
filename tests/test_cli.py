"""The CLI across process boundaries, and every user mistake: one line, non-zero, no change."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

SIGNOFF = [sys.executable, "-m", "cli"]


def signoff(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a new process, as a user in a new terminal would."""
    env = {**os.environ, "SIGNOFF_HOME": str(home), "SIGNOFF_USER": "ops@signoff.local"}
    return subprocess.run([*SIGNOFF, *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])


def counts(home: Path) -> dict[str, int]:
    with sqlite3.connect(home / "support.db") as conn:
        tables = ("refunds", "ticket_notes", "escalations", "mutation_ledger")
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}


def run_id_in(text: str) -> str:
    match = re.search(r"run-[0-9a-f]{10}", text)
    assert match, text
    return match.group(0)


def test_pause_in_one_process_approve_in_another_commits_once(home: Path) -> None:
    started = signoff(home, "run", "TKT-1002")
    assert started.returncode == 0, started.stderr
    assert "waiting_approval" in started.stdout
    run_id = run_id_in(started.stdout)
    before = counts(home)

    status = signoff(home, "status", run_id)
    assert "waiting_approval" in status.stdout and "create_refund_request" in status.stdout

    approved = signoff(home, "approve", run_id, "--as", "lead@acme.example", "--reason", "ok")
    assert approved.returncode == 0, approved.stderr
    assert "resolved" in approved.stdout
    after = counts(home)
    assert after["refunds"] == before["refunds"] + 1
    assert after["mutation_ledger"] == before["mutation_ledger"] + 2  # refund + note

    again = signoff(home, "approve", run_id, "--as", "lead@acme.example")
    assert again.returncode == 1
    assert again.stderr.strip() == (f"error: run {run_id} is not waiting for a decision "
                                    "(status: resolved)")
    assert counts(home) == after


def test_status_shows_what_a_run_has_spent(home: Path) -> None:
    done = signoff(home, "run", "TKT-1001")
    assert done.returncode == 0, done.stderr
    status = signoff(home, "status", run_id_in(done.stdout))
    # TKT-1001: lookup, order, refund, note; the offline models are priced at $0.
    spent = re.search(r"spent: (\d+) model call\(s\), ([\d,]+) tokens, \$0\.0000; "
                      r"4 tool call\(s\), 0 retry\(ies\)", status.stdout)
    assert spent, status.stdout
    assert int(spent.group(1)) > 0 and int(spent.group(2).replace(",", "")) > 0


def test_status_says_whether_the_process_holding_a_run_is_still_there(home: Path) -> None:
    import socket
    import time

    done = signoff(home, "run", "TKT-1005")
    assert done.returncode == 0, done.stderr
    run_id = run_id_in(done.stdout)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    holders = [
        (f"{socket.gethostname()}:{gone}:0000", time.time() + 100, "which is no longer running"),
        ("elsewhere:1:0000", time.time() - 30, "whose lease expired"),
        (f"{socket.gethostname()}:{os.getpid()}:0000", time.time() + 100, "(lease for"),
    ]
    for holder, expires, expected in holders:
        with sqlite3.connect(home / "control.db") as conn:
            conn.execute("UPDATE runs SET status = 'running', lease_owner = ?, lease_expires = ?"
                         " WHERE run_id = ?", (holder, expires, run_id))
        status = " ".join(signoff(home, "status", run_id).stdout.split())
        assert f"held by process {holder}" in status and expected in status, status
        assert (f"resume {run_id}` continues the run" in status) == (expected != "(lease for")


def test_demo_prints_the_command_that_approves_the_waiting_run(home: Path) -> None:
    demo = signoff(home, "demo")
    assert demo.returncode == 0, demo.stderr
    for ticket in ("TKT-1001", "TKT-1003", "TKT-1007", "TKT-2001"):
        assert ticket in demo.stdout
    line = next(ln for ln in demo.stdout.splitlines() if " approve run-" in ln)
    command = line.split("approve", 1)[1].split()
    approved = signoff(home, "approve", *[c.strip('"') for c in command[:3]],
                       "--reason", "receipt checked")
    assert approved.returncode == 0, approved.stderr
    assert "resolved" in approved.stdout


@pytest.fixture
def paused(home: Path) -> str:
    result = CliRunner().invoke(app, ["run", "TKT-1002", "--as", "ops@signoff.local"])
    assert result.exit_code == 0, result.output
    return run_id_in(result.output)


def one_line_error(result, expected: str, code: int = 1) -> None:  # noqa: ANN001
    """One `error:` line holding `expected`; exit 1 (a mistake) or 3 (damaged data)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]


@pytest.mark.parametrize("args, expected", [
    (["status", "run-doesnotexist"], "no run with id 'run-doesnotexist'"),
    (["approve", "run-doesnotexist", "--as", "lead@acme.example"], "no run with id"),
    (["resume", "run-doesnotexist"], "no run with id"),
    (["run", "TKT-9999"], "unknown sample ticket 'TKT-9999'"),
    (["run", "--text", "where is my order?", "--email", "nobody@example.com"],
     "no customer with email"),
    (["kill"], "give exactly one of --workflow NAME or --all"),
    (["run", "TKT-1001", "--workflow", "payroll"], "unknown workflow 'payroll'"),
])
def test_user_mistakes_are_one_line_errors(home: Path, args: list[str], expected: str) -> None:
    CliRunner().invoke(app, ["runs"])  # creates the data directory
    one_line_error(CliRunner().invoke(app, args), expected)


@pytest.mark.parametrize("args, expected", [
    (["approve", "{run}", "--as", "ops@signoff.local"], "started this run and cannot decide"),
    (["approve", "{run}", "--as", "mallory@example.com"], "is not an approver"),
    (["edit", "{run}", "--as", "lead@acme.example", "--args", "{not json"], "not valid JSON"),
    (["edit", "{run}", "--as", "lead@acme.example", "--args", "[1, 2]"], "must be a JSON object"),
    (["edit", "{run}", "--as", "lead@acme.example", "--args", '{"amount_cents": -5}'],
     "amount_cents"),
    (["edit", "{run}", "--as", "lead@acme.example", "--args", '{"refund_everything": true}'],
     "refund_everything"),
    (["reject", "{run}", "--as", "lead@acme.example", "--reason", "  "], "needs a reason"),
    (["resume", "{run}"], "waiting for a human decision"),
])
def test_bad_decisions_change_nothing(home: Path, paused: str, args: list[str],
                                      expected: str) -> None:
    before = counts(home)
    result = CliRunner().invoke(app, [a.replace("{run}", paused) for a in args])
    one_line_error(result, expected)
    assert counts(home) == before
    status = CliRunner().invoke(app, ["status", paused])
    assert "waiting_approval" in status.output


def test_approving_a_finished_run_is_refused(home: Path) -> None:
    done = CliRunner().invoke(app, ["run", "TKT-1001"])
    run_id = run_id_in(done.output)
    one_line_error(CliRunner().invoke(app, ["approve", run_id, "--as", "lead@acme.example"]),
                   "is not waiting for a decision (status: resolved)")


@pytest.mark.parametrize("damage", ["missing", "garbage", "foreign"])
def test_missing_or_corrupt_database_is_a_clean_error(home: Path, paused: str,
                                                      damage: str) -> None:
    db = home / "support.db"
    if damage == "missing":
        db.unlink()
        expected = "support database not found"
    elif damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
        expected = "not a signoff support database"
    else:
        db.unlink()
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE unrelated (x)")
        expected = "not a signoff support database"
    before = db.read_bytes() if db.exists() and damage != "missing" else None
    result = CliRunner().invoke(app, ["approve", paused, "--as", "lead@acme.example"])
    one_line_error(result, expected, code=3)
    if before is not None:
        assert db.read_bytes() == before
    assert "waiting_approval" in CliRunner().invoke(app, ["status", paused]).output


def test_corrupt_control_database_is_a_clean_error(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "control.db").write_bytes(b"garbage" * 1000)
    one_line_error(CliRunner().invoke(app, ["runs"]), "is not a usable signoff control database",
                   code=3)


def test_every_command_has_help_with_an_example() -> None:
    import typer.main

    click_app = typer.main.get_command(app)
    names = []

    def walk(group, prefix: str = "") -> None:  # noqa: ANN001
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                walk(cmd, f"{prefix}{name} ")
            else:
                names.append(f"{prefix}{name}")
                assert cmd.help and "Example" in cmd.help, f"{prefix}{name} has no example"

    walk(click_app)
    assert {"demo", "run", "runs", "status", "approve", "reject", "edit", "resume",
            "kill", "unkill"} <= set(names)


@pytest.mark.parametrize("name, expected", [
    ("checkpoints.db", "is not a usable checkpoint database"),
    ("traces.db", "cannot open the trace store"),
    ("audit.db", "cannot open the trace store"),
])
def test_a_corrupt_store_leaves_the_waiting_run_waiting(home: Path, paused: str, name: str,
                                                        expected: str) -> None:
    for leftover in home.glob(f"{name}-*"):  # the -wal/-shm of the file being replaced
        leftover.unlink()
    (home / name).write_bytes(b"\x13garbage" * 500)
    before = counts(home)
    one_line_error(CliRunner().invoke(app, ["approve", paused, "--as", "lead@acme.example"]),
                   expected, code=3)
    assert counts(home) == before
    assert "waiting_approval" in CliRunner().invoke(app, ["status", paused]).output


def test_a_ticket_text_is_read_from_standard_input(home: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--text-file", "-", "--email",
                                      "aiko.tanaka@example.com"],
                                input="Where is ORD-10005? It never came.\n")
    assert result.exit_code == 0, result.output
    assert "customer answered on the ticket" in result.output


def test_a_ticket_text_file_that_cannot_be_read_is_one_line(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Où est ORD-10005?".encode("latin-1"))
    for name, expected in ((str(tmp_path / "missing.txt"), "cannot read --text-file"),
                           (str(bad), "the ticket text is not valid UTF-8")):
        result = CliRunner().invoke(app, ["run", "--text-file", name, "--email",
                                          "aiko.tanaka@example.com"])
        one_line_error(result, expected)


def test_run_ids_are_never_cut_in_traces(home: Path) -> None:
    ran = CliRunner().invoke(app, ["run", "TKT-1001"])
    run_id = run_id_in(ran.output)
    listed = CliRunner().invoke(app, ["traces"])
    assert listed.exit_code == 0, listed.output
    assert run_id in listed.output
