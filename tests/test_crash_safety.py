"""Exactly-once under hard kills: SIGKILL the sample workflow at every kill point of four
scenarios (before/after each commit, before/after each checkpoint and task-writes save, while
an approval or an edit is applied), recover, and count duplicates, lost approvals and runs
that never end; on SQLite and on PostgreSQL (every store there), two harness workers each.
On PostgreSQL also a second process taking over once the lease expired."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkpoints.faults import RESUME_MARK, CrashFaults
from checkpoints.soak import (
    KillPlan,
    PlanReport,
    Summary,
    Template,
    execute_plan,
    forked_action,
    format_summary,
    mutation_rows,
    plan_home,
    prepare_templates,
    reset_home,
    run_plans,
    scratch_root,
    single_kill_plans,
    summarize,
)
from graph.errors import RunBusy, RunNotFound
from graph.runner import Home, Runner
from tests.conftest import run_store
from tests.pg import drop_schemas, new_prefix
from tests.pg import test_database_url as database_url
from tools.ledger import commit_once, ensure_ledger
from tools.support.models import AddTicketNoteOutput

SUITE_SCENARIOS = ("refund", "approve", "to-approval", "edit")


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="signoff-crash-", dir=scratch_root()) as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def templates(workdir: Path) -> dict[str, Template]:
    return prepare_templates(workdir, SUITE_SCENARIOS)


def test_references_match_the_sample_tickets(templates: dict[str, Template]) -> None:
    # A harness whose fault-free reference were wrong would compare against the wrong thing.
    for name in ("refund", "approve", "to-approval", "edit"):
        assert templates[name].outcome == "resolved"
        assert templates[name].rows == {"refunds": 1, "ticket_notes": 1, "escalations": 0,
                                        "mutation_ledger": 2}


def run_and_summarize(templates: dict[str, Template], plans: list[KillPlan], workdir: Path,
                      capsys: pytest.CaptureFixture[str], backend: str
                      ) -> tuple[list[PlanReport], Summary]:
    """Run the plans on two workers and print their summary (the figures docs/ quote)."""
    started = time.perf_counter()
    reports = run_plans(templates, plans, workdir, workers=min(2, os.cpu_count() or 1))
    summary = summarize(reports)
    with capsys.disabled():
        print(f"\n{backend}: " + format_summary(summary, time.perf_counter() - started))
    return reports, summary


def assert_every_kill_recovered(reports: list[PlanReport], summary: Summary,
                                plans: list[KillPlan]) -> list[PlanReport]:
    """What every all-points campaign must show, on either backend: at least 200 kills, one
    per plan, each recovered to a terminal run with no duplicate, missing mutation or lost
    approval, every kind of kill point and both tools' commits hit, kills while a decision
    was applied among them; the reports of the decision scenarios."""
    assert summary.failures == []
    assert summary.kills == len(plans) == summary.plans >= 200
    assert summary.duplicates == 0 and summary.missing == 0 and summary.lost_approvals == 0
    assert summary.terminal == summary.plans
    assert summary.resumes >= summary.kills  # each kill was followed by at least one resume
    labels = [label for r in reports for label in r.killed_at]
    for kind in ("before_commit", "after_commit", "before_checkpoint", "after_checkpoint",
                 "before_writes", "after_writes"):
        assert any(label.startswith(kind + ":") for label in labels), kind
    for tool in ("create_refund_request", "add_ticket_note"):
        assert f"before_commit:{tool}" in labels and f"after_commit:{tool}" in labels
    # Kills while a human decision was being applied, before and after it reached the disk.
    assert any(label.endswith(RESUME_MARK) for label in labels)
    decide_reports = [r for r in reports if r.plan.scenario in ("approve", "edit")]
    assert any(r.reasked for r in decide_reports)  # killed before the decision was saved
    return decide_reports


def test_every_kill_point_recovers_exactly_once(templates: dict[str, Template], workdir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    plans = single_kill_plans(templates)
    reports, summary = run_and_summarize(templates, plans, workdir, capsys, "SQLite")

    decide_reports = assert_every_kill_recovered(reports, summary, plans)
    assert any(not r.reasked and r.killed_at[0].startswith("after_commit")
               for r in decide_reports)


def test_the_harness_sees_a_duplicate_when_the_ledger_is_bypassed(
        templates: dict[str, Template], workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every call gets a fresh key, as if there were no idempotency ledger: a kill just after
    # the refund committed must then show up as a duplicate refund after the resume.
    import uuid

    import graph.nodes.execute as execute_node

    monkeypatch.setattr(execute_node, "idempotency_key", lambda *a: uuid.uuid4().hex)
    template = templates["refund"]
    after_refund = template.points.index("after_commit:create_refund_request") + 1
    report = execute_plan(template, KillPlan("refund", (after_refund,)), workdir)
    assert report.killed_at == ["after_commit:create_refund_request"]
    assert report.terminal and report.duplicates >= 1 and not report.ok


def test_kill_during_recovery_of_a_kill(templates: dict[str, Template], workdir: Path) -> None:
    template = templates["approve"]
    commit = template.points.index("after_commit:create_refund_request") + 1
    plans = [KillPlan("approve", (commit, 3, 5)), KillPlan("approve", (2, 2, 2, 2))]
    for report in run_plans(templates, plans, workdir, workers=1):
        assert report.ok, report
        assert len(report.killed_at) >= 3


def test_signoff_resume_recovers_a_killed_run(templates: dict[str, Template],
                                              workdir: Path) -> None:
    """The operator's path: a process dies mid-refund; `signoff resume` in a new process takes
    the dead holder's lease at once and finishes the run with one refund."""
    template = templates["refund"]
    home = workdir / "cli-resume"
    shutil.copytree(template.home, home)
    kill_at = template.points.index("before_commit:create_refund_request") + 1
    result, label, _ = forked_action(home, template.scenario, "start", None, kill_at)
    assert (result, label) == ("killed", "before_commit:create_refund_request")
    conn = sqlite3.connect(home / "control.db")
    run_id, status, owner = conn.execute("SELECT run_id, status, lease_owner FROM runs").fetchone()
    conn.close()
    assert status == "running" and owner  # the dead process still holds the lease

    signoff = Path(sys.executable).with_name("signoff")
    env = {**os.environ, "SIGNOFF_HOME": str(home)}
    done = subprocess.run([str(signoff), "resume", run_id], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"run {run_id}: resolved (2 mutation(s))" in done.stdout
    assert mutation_rows(home, run_id)["refunds"] == 1


def test_commit_once_rolls_back_a_crash_before_commit_and_replays_after(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "d.db")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.commit()
    ensure_ledger(conn)

    def apply() -> AddTicketNoteOutput:
        conn.execute("INSERT INTO notes (body) VALUES ('hello')")
        return AddTicketNoteOutput(note_id="NOTE-1", ticket_id="TKT-1001")

    def crash() -> None:
        raise KeyboardInterrupt  # anything, even a BaseException, before COMMIT

    common = {"key": "k1", "run_id": "r", "step": 3, "tool": "add_ticket_note",
              "args": {"body": "hello"}, "apply": apply}
    with pytest.raises(KeyboardInterrupt):
        commit_once(conn, **common, before_commit=crash)  # type: ignore[arg-type]
    assert conn.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM mutation_ledger").fetchone()[0] == 0
    first = commit_once(conn, **common)  # type: ignore[arg-type]
    again = commit_once(conn, **common)  # type: ignore[arg-type]
    assert (first.replayed, again.replayed) == (False, True)
    assert again.result == first.result
    assert conn.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 1


def test_crash_faults_only_record_without_a_kill_point() -> None:
    faults = CrashFaults()
    faults.before_commit("run-1", 3, "create_refund_request")
    faults.after_commit("run-1", 3, "create_refund_request")
    assert faults.labels == ["before_commit:create_refund_request",
                             "after_commit:create_refund_request"]


# PostgreSQL -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_templates(workdir: Path) -> Iterator[dict[str, Template]]:
    url = database_url()
    prefix = new_prefix()
    (workdir / "pg").mkdir()
    try:
        yield prepare_templates(workdir / "pg", SUITE_SCENARIOS, database_url=url,
                                schema_prefix=prefix)
    finally:
        drop_schemas(url, prefix)


def test_every_kill_point_on_postgres_recovers_exactly_once(
        pg_templates: dict[str, Template], workdir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The SQLite campaign above with every store on PostgreSQL (registry, PostgresSaver
    checkpoints, traces, audit, the sample data and its ledger): each harness worker resets
    its own schemas to the scenario's starting rows before each plan (checkpoints.pgreset);
    the references were measured on schemas upgraded and installed the ordinary way."""
    plans = single_kill_plans(pg_templates)
    reports, summary = run_and_summarize(pg_templates, plans, workdir, capsys, "PostgreSQL")

    for name in SUITE_SCENARIOS:
        assert pg_templates[name].outcome == "resolved"
        assert pg_templates[name].rows == {"refunds": 1, "ticket_notes": 1, "escalations": 0,
                                           "mutation_ledger": 2}
    assert_every_kill_recovered(reports, summary, plans)


def test_a_reset_leaves_exactly_the_source_rows(pg_templates: dict[str, Template],
                                                workdir: Path) -> None:
    """What each plan on PostgreSQL starts from: after a run wrote to every store, a reset
    brings back the source's rows (a waiting run included) and its id sequences, so the next
    plan's first refund gets the same id as a fresh install's would."""
    import psycopg

    template = pg_templates["approve"]
    root = workdir / "pg-reset"
    shutil.copytree(template.home, root)
    home = reset_home(template, root)
    assert template.run_id is not None
    assert forked_action(home, template.scenario, "decide", template.run_id, None)[:2] == (
        "done", "resolved")
    assert mutation_rows(home, template.run_id) == template.rows

    def snapshot(prefix: str) -> dict[str, list[tuple[object, ...]]]:
        with psycopg.connect(template.database_url or "") as conn:
            tables = conn.execute(
                "SELECT schemaname, tablename FROM pg_tables WHERE starts_with(schemaname, %s)"
                " ORDER BY 1, 2", (prefix,)).fetchall()
            rows = {f"{schema[len(prefix):]}.{table}": sorted(
                conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall(), key=repr)
                for schema, table in tables}
            rows["sequences"] = sorted((schema[len(prefix):], name, last) for schema, name, last
                                       in conn.execute(
                "SELECT schemaname, sequencename, last_value FROM pg_sequences"
                " WHERE starts_with(schemaname, %s)", (prefix,)).fetchall())
            return rows

    source, after_run = snapshot(template.source_prefix), snapshot(home.schema_prefix)
    assert after_run != source  # the run wrote: the comparison below can fail
    assert len(source) >= 30 and len(source["control.runs"]) == 1
    home = reset_home(template, root)
    assert snapshot(home.schema_prefix) == source
    shutil.rmtree(root)


def test_a_second_process_resumes_on_postgres_once_the_lease_expired(
        pg_templates: dict[str, Template], workdir: Path) -> None:
    """A process driving a run on PostgreSQL is SIGKILLed at the checkpoint just after its
    refund committed. Its lease, as if it had run on another machine, keeps a second process
    out until it expires; then `signoff resume`, a new process, finishes with one refund."""
    template = pg_templates["refund"]
    root = workdir / "pg-expired"
    shutil.copytree(template.home, root)
    home = plan_home(template, root)
    refund = template.points.index("after_commit:create_refund_request")
    kill_at = next(i for i, label in enumerate(template.points)
                   if i > refund and label.startswith("after_checkpoint:")) + 1
    result, label, _ = forked_action(home, template.scenario, "start", None, kill_at)
    assert (result, label.split(":")[0]) == ("killed", "after_checkpoint")
    with run_store(home) as store:
        [run] = store.list()
        assert run.status == "running" and run.lease_owner
        # The holder on another host: its pid cannot be checked, only its lease's expiry.
        store.conn.execute("UPDATE runs SET lease_owner = 'worker-2:4242:cafe0000',"
                           " lease_expires = ? WHERE run_id = ?", (time.time() + 60, run.run_id))
    assert mutation_rows(home, run.run_id)["refunds"] == 1  # committed before the kill

    second = Runner(home)
    try:
        with pytest.raises(RunBusy, match=rf"^run {run.run_id} is busy: another process "
                                          r"\(worker-2:4242:cafe0000\) holds it \(lease "
                                          r"expires in [56]\ds\)$"):
            second.resume(run.run_id)
    finally:
        second.close()

    signoff = [str(Path(sys.executable).with_name("signoff")), "resume", run.run_id]
    env = {**os.environ, "SIGNOFF_HOME": str(root), "SIGNOFF_DATABASE_URL": str(
        home.database_url), "SIGNOFF_DB_SCHEMA_PREFIX": home.schema_prefix}
    with run_store(home) as store:  # the lease lapses
        store.conn.execute("UPDATE runs SET lease_expires = ? WHERE run_id = ?",
                           (time.time() - 1, run.run_id))
    done = subprocess.run(signoff, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"run {run.run_id}: resolved (2 mutation(s))" in done.stdout
    assert mutation_rows(home, run.run_id) == template.rows  # one refund, one note
    with run_store(home) as store:
        final = store.get(run.run_id)
    assert final.status == "resolved" and final.lease_owner is None
    with run_store(Home(root)) as local:  # the data directory's SQLite files never saw it
        with pytest.raises(RunNotFound):
            local.get(run.run_id)


def test_the_soak_runs_on_postgres_and_drops_its_schemas(
        capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    from checkpoints.soak import main

    url = database_url()

    def soak_schemas() -> set[str]:
        with psycopg.connect(url) as conn:
            return {r[0] for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, 'soak')")}

    before = soak_schemas()
    assert main(["--kills", "2", "--workers", "1", "--scenario", "refund",
                 "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kill points: 2 SIGKILLs over 2 runs in 1 scenarios (")
    assert "duplicates=0 missing mutations=0 lost approvals=0 terminal runs=2/2" in out
    assert soak_schemas() <= before  # its own are gone


def test_the_soak_refuses_an_unreachable_database_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from checkpoints.soak import main

    assert main(["--kills", "1", "--database-url",
                 "postgresql://soak:secret@127.0.0.1:1/none"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach postgresql://soak:***@127.0.0.1:1/none: ")
    assert len(err.strip().splitlines()) == 1 and "secret" not in err
