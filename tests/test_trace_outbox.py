"""A node's trace and audit events are saved with its checkpoint writes, then written to the
stores when the drive ends; a drive that dies in between loses none of them."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from checkpoints.backend import SqliteBackend
from checkpoints.faults import CrashFaults
from graph.observe import recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from observability import verify_audit
from tests.conftest import sample
from tests.stores import execute
from tools.support.faults import FaultPlan

TABLES = ("model_calls", "tool_calls", "decisions", "evidence")


def _home(home: Path | Home) -> Home:
    return home if isinstance(home, Home) else Home(home)


def trace_counts(home: Path | Home, run_id: str) -> dict[str, int]:
    return {t: execute(_home(home), "traces", f"SELECT COUNT(*) FROM {t} WHERE run_id = ?",
                       (run_id,))[0][0] for t in TABLES}


def audit_kinds(home: Path | Home, run_id: str) -> list[str]:
    return [r[0] for r in execute(_home(home), "audit",
                                  "SELECT kind FROM audit WHERE run_id = ? ORDER BY seq",
                                  (run_id,))]


def traced_runner(home: Path | Home, faults: CrashFaults | None = None,
                  **kwargs: object) -> Runner:
    runner = Runner(_home(home), recorder_factory=recorder_factory(), faults=faults,
                    **kwargs)  # type: ignore[arg-type]
    if not (_home(home).root / "support.db").exists():
        runner.ensure_domain_db(get_workflow("support"))
    return runner


def start_in_child(home: Path | Home, kill_at: int) -> None:
    """Start TKT-1001 in a forked child that SIGKILLs itself at kill point `kill_at`."""
    pid = os.fork()
    if pid == 0:
        try:
            traced_runner(home, CrashFaults(kill_at)).start(
                "support", sample("TKT-1001"), requester="ops@signoff.local")
        finally:
            os._exit(3)  # reached only if the kill point never came
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), "the child was meant to die at its kill point"


def test_events_reach_the_stores_when_the_drive_ends(backend_home: Home) -> None:
    runner = traced_runner(backend_home)
    done = runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    runner.close()
    assert done.status == "resolved"
    counts = trace_counts(backend_home, done.run_id)
    assert counts["tool_calls"] == 4 and counts["decisions"] >= 6 and counts["model_calls"] >= 5
    assert audit_kinds(backend_home, done.run_id)[0] == "run_started"
    assert audit_kinds(backend_home, done.run_id)[-1] == "run_finished"


@pytest.mark.parametrize("point", ["after_checkpoint", "after_writes"])
def test_a_drive_killed_midway_loses_no_event_and_repeats_none(tmp_path: Path,
                                                               point: str) -> None:
    reference_home = tmp_path / "reference"
    faults = CrashFaults(None)  # counts the kill points of a fault-free run
    reference = traced_runner(reference_home, faults)
    done = reference.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    reference.close()
    expected_trace = trace_counts(reference_home, done.run_id)
    expected_audit = audit_kinds(reference_home, done.run_id)
    # Die at the last such point before the run ends: every node but the final ones saved.
    kill_at = max(i for i, label in enumerate(faults.labels, 1) if label.startswith(point))

    home = tmp_path / "crashed"
    traced_runner(home).close()  # the sample data, made before the child starts
    start_in_child(home, kill_at)
    with sqlite3.connect(home / "control.db") as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
    # The dead drive never wrote its nodes' events: they are only in its checkpoint writes.
    assert trace_counts(home, run_id)["tool_calls"] == 0

    runner = traced_runner(home)
    resumed = runner.resume(run_id)
    runner.close()
    assert resumed.status == "resolved"
    assert trace_counts(home, run_id) == expected_trace
    assert audit_kinds(home, run_id) == expected_audit
    assert verify_audit(home).ok


def test_a_drive_that_fails_still_writes_the_events_of_the_nodes_it_finished(
        tmp_path: Path) -> None:
    class BackEndCrashed(Exception):
        pass

    def crash(seconds: float) -> None:
        raise BackEndCrashed("the order service fell over")

    # get_order's back end raises something no tool contract expects: the drive fails.
    runner = traced_runner(tmp_path, tool_faults=FaultPlan(slow_seconds={"get_order": 1.0},
                                                           sleep=crash))
    try:
        with pytest.raises(BackEndCrashed):
            runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    finally:
        runner.close()
    with sqlite3.connect(tmp_path / "traces.db") as conn:
        tools = [r[0] for r in conn.execute("SELECT tool FROM tool_calls")]
        gates = conn.execute("SELECT COUNT(*) FROM decisions WHERE kind = 'gate'").fetchone()[0]
    # lookup_customer ran and was traced; get_order's gate decision came from the gate node,
    # which finished before execute raised.
    assert tools == ["lookup_customer"]
    assert gates == 2


def test_a_graph_driven_directly_writes_each_nodes_events_when_it_ends(tmp_path: Path) -> None:
    """Without the runner (events_in_writes off) nothing would write the events at the end of
    a drive, so each node's go to the stores as the node finishes."""
    import time

    from langgraph.checkpoint.memory import InMemorySaver

    from checkpoints.runs import RunStore
    from graph.context import RunContext
    from graph.factory import build_graph
    from graph.runner import initial_inputs
    from observability import Recorder
    from verifiers.policy import load_policy

    support = get_workflow("support")
    traced_runner(tmp_path).close()  # the sample data
    ticket = sample("TKT-1001")
    db, runs = support.open_db(tmp_path / "support.db"), RunStore.open(SqliteBackend(tmp_path))
    recorder = Recorder(tmp_path)
    ctx = RunContext(run_id="run-direct", tenant_id="acme", requester="ops@signoff.local",
                     workflow=support, registry=support.tools(),
                     policy=load_policy(support.policy_path), policy_error=None,
                     planner=support.planner(), checker=support.checker(), db=db, runs=runs,
                     recorder=recorder)
    inputs = initial_inputs("run-direct", ticket, time.time())
    try:
        final = build_graph().compile(checkpointer=InMemorySaver()).invoke(
            inputs, {"configurable": {"thread_id": "run-direct"}}, context=ctx)
    finally:
        recorder.close()
        db.close()
        runs.close()
    assert final["outcome"] == "resolved"
    assert trace_counts(tmp_path, "run-direct")["tool_calls"] == 4
    assert "mutation" in audit_kinds(tmp_path, "run-direct")


def test_an_unreadable_event_writes_nothing_of_its_batch(tmp_path: Path) -> None:
    from observability import Recorder

    recorder = Recorder(tmp_path)
    with recorder.capture() as events:
        recorder.decision("r1", "gate:1", step="1", kind="gate", verdict="red",
                          rule_id="R", reason="no")
    try:
        with pytest.raises(ValueError, match="not a recorder event"):
            recorder.write([*events, ["decisions", "too", "short"]])
        with pytest.raises(ValueError, match="not a recorder event"):
            recorder.write([["runs; DROP TABLE runs", *range(11)]])
    finally:
        recorder.close()
    assert trace_counts(tmp_path, "r1")["decisions"] == 0
    assert audit_kinds(tmp_path, "r1") == []


def test_resume_refuses_a_checkpoint_with_an_unreadable_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import graph.runner
    from graph.errors import SignoffError

    traced_runner(tmp_path).close()
    start_in_child(tmp_path, kill_at=3)
    with sqlite3.connect(tmp_path / "control.db") as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
    monkeypatch.setattr(graph.runner, "events_in_history",
                        lambda saver, run_id: [["decisions", "tampered"]])
    runner = traced_runner(tmp_path)
    try:
        with pytest.raises(SignoffError, match="unreadable trace event"):
            runner.resume(run_id)
        assert runner.status(run_id).status == "running"  # nothing driven, nothing changed
    finally:
        runner.close()
    assert trace_counts(tmp_path, run_id)["decisions"] == 0


def damage_pages(path: Path) -> None:
    """Overwrite every page after the schema's and the schema version's with garbage: the
    file still opens, and the next write into its tables fails with "database disk image
    is malformed"."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        kept = conn.execute("SELECT max(rootpage) FROM sqlite_master"
                            " WHERE tbl_name = 'signoff_schema'").fetchone()[0] or 1
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[kept * page:] = b"\x5a" * (len(data) - kept * page)
    path.write_bytes(bytes(data))


def test_a_committed_refund_is_reported_as_it_is_when_the_audit_write_fails(
        home: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    from cli.main import app

    cli = CliRunner()
    held = cli.invoke(app, ["run", "TKT-1002", "--as", "ops@signoff.local"])
    run_id = held.output.split()[1].rstrip(":")
    backup = home.parent / "audit-backup.db"
    with sqlite3.connect(home / "audit.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(home / "audit.db", backup)
    damage_pages(home / "audit.db")

    approved = cli.invoke(app, ["approve", run_id, "--as", "lead@acme.example"])
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith(f"run {run_id}: resolved (2 mutation(s))")
    (warning,) = approved.stderr.strip().splitlines()
    assert warning.startswith("warning: the run's trace and audit events could not be written "
                              "(database disk image is malformed)")
    with sqlite3.connect(home / "support.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM refunds WHERE run_id = ?",
                            (run_id,)).fetchone()[0] == 1
    status = cli.invoke(app, ["status", run_id]).output
    assert "status: resolved" in status and "not yet written" in status

    # Fail closed: nothing new runs while an earlier mutation's audit entry is missing.
    with sqlite3.connect(home / "control.db") as conn:
        runs_before = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    refused = cli.invoke(app, ["run", "TKT-1001"])
    assert refused.exit_code == 3, refused.output
    assert refused.stderr.startswith("error: the trace and audit stores cannot be written")
    with sqlite3.connect(home / "control.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == runs_before

    # Once the store is restored, the next run writes the parked events first.
    for suffix in ("-wal", "-shm"):
        Path(f"{home / 'audit.db'}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, home / "audit.db")
    assert cli.invoke(app, ["run", "TKT-1001"]).exit_code == 0
    with sqlite3.connect(home / "control.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM event_outbox").fetchone()[0] == 0
    assert "mutation" in audit_kinds(home, run_id)
    assert audit_kinds(home, run_id)[-1] == "run_finished"
    assert verify_audit(home).ok
