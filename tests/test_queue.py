"""Workers on the Postgres job queue: `signoff run --queue` and the decision commands enqueue,
`signoff worker` processes drive, the run's lease keeps two drivers off one run, a SIGKILLed
worker's run is taken over, and two workers drain 200 tickets with no duplicate mutation.

The stores are the SQLite home (one machine, many workers), and for the drain also every
store on PostgreSQL; the queue is PostgreSQL, at SIGNOFF_TEST_DATABASE_URL, each test in a
schema of its own.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from checkpoints.runs import TERMINAL
from checkpoints.soak import MUTATION_TABLES
from cli.main import app
from graph.approvals import held_digest
from graph.observe import recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tests.conftest import sample
from tests.domain_grid import domain_rows, store_rows
from tests.pg import pg_schemas
from worker.app import QueueSettings, create_app
from worker.queue import enqueue_run, migrations_between, upgrade_schema

ROOT = Path(__file__).resolve().parents[1]
PG_VAR = "SIGNOFF_TEST_DATABASE_URL"
SIGNOFF = str(Path(sys.executable).with_name("signoff"))
LEAD = "lead@acme.example"
FAST = ["--sweep-every", "1s", "--stalled-after", "2s"]
"""Sweeps every second; a run is enqueued again after --lapsed-after, which each test sets."""


@pytest.fixture
def bare_queue() -> Iterator[str]:
    """A queue URL on a schema of its own, with no Procrastinate schema in it yet."""
    base = os.environ.get(PG_VAR)
    if not base:
        pytest.skip(f"{PG_VAR} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def queue(bare_queue: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A queue with its schema, configured for the CLI as SIGNOFF_QUEUE_URL."""
    upgrade_schema(bare_queue)
    monkeypatch.setenv("SIGNOFF_QUEUE_URL", bare_queue)
    return bare_queue


@pytest.fixture
def seeded(home: Path) -> Iterator[Runner]:
    """The test's own runner on the home the workers share, over fresh sample data."""
    runner = Runner(Home(home), recorder_factory=recorder_factory())
    runner.ensure_domain_db(get_workflow("support"), reset=True)
    yield runner
    runner.close()


class Worker:
    """A worker process, its output in a file; stopped with SIGTERM as an operator would."""

    def __init__(self, argv: list[str], home: Path, queue: str, log: Path) -> None:
        self.log = log
        env = {**os.environ, "SIGNOFF_HOME": str(home), "SIGNOFF_QUEUE_URL": queue}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         cwd=ROOT)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> None:
        wait_for(lambda: "Starting worker" in self.output() or self.proc.poll() is not None,
                 30, "the worker to start")
        assert self.proc.poll() is None, self.output()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.output()


@pytest.fixture
def workers(home: Path, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start worker processes on the test's home; every one left running is stopped."""
    started: list[Worker] = []

    def start(queue: str, *args: str, helper: bool = False) -> Worker:
        argv = ([sys.executable, "-m", "tests.queue_worker", str(home), queue, *args]
                if helper else [SIGNOFF, "worker", *FAST, *args])
        worker = Worker(argv, home, queue, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(condition: Callable[[], Any], timeout: float, what: str, *,
             every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def status_of(runner: Runner, run_id: str) -> str:
    return runner.status(run_id).status


def rows_of(home: Path, run_id: str) -> dict[str, int]:
    with sqlite3.connect(home / "support.db") as conn:
        return {table: conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?",
                                    (run_id,)).fetchone()[0] for table in MUTATION_TABLES}


def drive_jobs(queue: str) -> dict[str, int]:
    """The queue's drive jobs by status."""
    with psycopg.connect(queue) as conn:
        return dict(conn.execute("SELECT status::text, COUNT(*) FROM procrastinate_jobs"
                                 " WHERE task_name = 'signoff.drive_run' GROUP BY status")
                    .fetchall())


def enqueue_all(queue: str, run_ids: list[str]) -> None:
    with create_app(QueueSettings(url=queue)).open() as queue_app:
        for run_id in run_ids:
            assert enqueue_run(queue_app, run_id)


def run_id_in(text: str) -> str:
    found = re.search(r"run (run-[0-9a-f]{10}): ", text)
    assert found, text
    return found.group(1)


# Without a queue ------------------------------------------------------------------------------

def test_run_queue_without_a_queue_is_one_line_and_registers_nothing(home: Path) -> None:
    result = CliRunner().invoke(app, ["run", "TKT-1001", "--queue"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: --queue needs a queue: set SIGNOFF_QUEUE_URL="
                                     "postgresql://... (or SIGNOFF_DATABASE_URL to a "
                                     "postgresql URL)")
    assert not (home / "control.db").exists() or "run-" not in CliRunner().invoke(
        app, ["runs"]).stdout


def test_a_queue_that_cannot_be_reached_leaves_the_decision_untaken(
        runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    waiting = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local")
    monkeypatch.setenv("SIGNOFF_QUEUE_URL", "postgresql://nobody:secret@127.0.0.1:1/none")
    result = CliRunner().invoke(app, ["approve", waiting.run_id, "--as", LEAD])
    assert result.exit_code == 3, result.output
    line = result.stderr.strip()
    assert line.startswith("error: cannot reach the queue database "
                           "postgresql://nobody:***@127.0.0.1:1/none: ") and "secret" not in line
    assert runner.status(waiting.run_id).status == "waiting_approval"


def test_a_queue_url_must_be_postgres(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_QUEUE_URL", "sqlite:///tmp/queue.db")
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: SIGNOFF_QUEUE_URL must be a postgresql://... URL "
                                     "(the queue lives in PostgreSQL), or off")


def test_the_queue_defaults_to_a_postgres_database_url_unless_it_is_off() -> None:
    from cli.queue import queue_url

    pg = "postgresql://signoff@db/signoff"
    assert queue_url({"SIGNOFF_DATABASE_URL": pg}) == pg
    assert queue_url({"SIGNOFF_DATABASE_URL": pg, "SIGNOFF_QUEUE_URL": "off"}) is None
    assert queue_url({"SIGNOFF_DATABASE_URL": pg, "SIGNOFF_QUEUE_URL": pg + "2"}) == pg + "2"
    assert queue_url({"SIGNOFF_DATABASE_URL": "/var/lib/signoff"}) is None
    assert queue_url({}) is None


def test_upgrades_apply_procrastinates_migrations_in_order() -> None:
    names = [p.name for p in migrations_between((3, 0, 0), (3, 4, 0))]
    assert names[0].startswith("03.01.00_01_pre") and names[-1].startswith("03.04.00_50_post")
    assert names == sorted(names)
    assert migrations_between((3, 4, 0), (3, 4, 0)) == []


# On PostgreSQL ---------------------------------------------------------------------------------

def test_queue_upgrade_is_idempotent_and_a_worker_needs_it(
        bare_queue: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_QUEUE_URL", bare_queue)
    cli = CliRunner()
    refused = cli.invoke(app, ["worker"])
    assert refused.exit_code == 1
    assert refused.stderr.strip().endswith("has no schema yet: run `signoff queue upgrade` once")
    first, again = cli.invoke(app, ["queue", "upgrade"]), cli.invoke(app, ["queue", "upgrade"])
    assert first.exit_code == again.exit_code == 0, first.output + again.output
    assert re.fullmatch(r"applied Procrastinate 3\.\d+\.\d+'s queue schema\n", first.stdout)
    assert re.fullmatch(r"the queue schema is up to date \(Procrastinate 3\.\d+\.\d+\)\n",
                        again.stdout)


def test_a_worker_drives_queued_runs_and_resumes_an_approved_one(
        queue: str, seeded: Runner, home: Path, workers: Callable[..., Worker]) -> None:
    cli = CliRunner()
    first = cli.invoke(app, ["run", "TKT-1001", "--queue"])
    second = cli.invoke(app, ["run", "TKT-1002", "--queue"])
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert "queued (0 mutation(s)) - queued for a worker" in first.stdout
    resolves, waits = run_id_in(first.stdout), run_id_in(second.stdout)
    listed = cli.invoke(app, ["runs", "--status", "queued"]).stdout
    assert resolves in listed and waits in listed  # nothing drives them yet

    worker = workers(queue, "--lapsed-after", "60s")
    worker.wait_ready()
    wait_for(lambda: status_of(seeded, resolves) in TERMINAL
             and status_of(seeded, waits) not in ("queued", "running"), 30,
             "the worker to drive both runs")
    assert status_of(seeded, resolves) == "resolved"
    assert status_of(seeded, waits) == "waiting_approval"
    assert rows_of(home, waits)["refunds"] == 0

    approved = cli.invoke(app, ["approve", waits, "--as", LEAD, "--reason", "receipt checked"])
    assert approved.exit_code == 0, approved.output
    assert (f"run {waits}: queued (0 mutation(s)) - decision recorded (approve by {LEAD}); "
            "queued for a worker") in approved.stdout
    twice = cli.invoke(app, ["approve", waits, "--as", LEAD])
    assert twice.exit_code == 1  # refused, whether the worker already holds the run or not
    assert re.fullmatch(rf"error: run {waits} (is not waiting for a decision \(status: "
                        r"(queued|resolved)\)|is busy: .*)\n", twice.stderr), twice.stderr
    wait_for(lambda: status_of(seeded, waits) in TERMINAL, 30, "the approved run to resume")
    assert status_of(seeded, waits) == "resolved"
    assert rows_of(home, waits) == {"refunds": 1, "ticket_notes": 1, "escalations": 0,
                                    "mutation_ledger": 2}

    log = worker.stop()
    assert worker.proc.returncode == 0, log
    assert "worker stopped; runs driven: resolved 2, waiting_approval 1" in log
    assert drive_jobs(queue) == {"succeeded": 3}
    assert cli.invoke(app, ["audit", "verify"]).exit_code == 0


def test_a_job_that_finds_the_lease_held_retries_until_it_is_free(
        queue: str, seeded: Runner, workers: Callable[..., Worker]) -> None:
    run_id = seeded.register("support", sample("TKT-1001"), requester="ops@signoff.local").run_id
    worker = workers(queue, "--busy-retry", "1", helper=True)
    worker.wait_ready()
    seeded.runs.acquire_lease(run_id, "elsewhere:1:busy", 3.0)  # a live driver on another host
    held_until = time.time() + 3.0
    enqueue_all(queue, [run_id])
    wait_for(lambda: status_of(seeded, run_id) in TERMINAL, 30, "the run to be driven")
    assert status_of(seeded, run_id) == "resolved"
    assert seeded.runs.get(run_id).updated_at >= held_until  # not before the lease lapsed
    with psycopg.connect(queue) as conn:
        jobs = conn.execute("SELECT status::text, attempts FROM procrastinate_jobs"
                            " WHERE task_name = 'signoff.drive_run'").fetchall()
    assert len(jobs) == 1 and jobs[0][0] == "succeeded" and jobs[0][1] >= 2  # retried


def test_a_worker_killed_mid_run_is_taken_over_with_no_second_refund(
        queue: str, seeded: Runner, home: Path, workers: Callable[..., Worker]) -> None:
    run_id = seeded.register("support", sample("TKT-1001"), requester="ops@signoff.local").run_id
    enqueue_all(queue, [run_id])
    doomed = workers(queue, "--kill-at", "after_commit:create_refund_request", helper=True)
    doomed.proc.wait(timeout=60)
    assert doomed.proc.returncode == -signal.SIGKILL, doomed.output()
    record = seeded.status(run_id)
    assert record.status == "running" and record.lease_owner  # the dead worker holds it
    assert rows_of(home, run_id)["refunds"] == 1  # the refund committed before the kill
    assert drive_jobs(queue) == {"doing": 1}

    survivor = workers(queue, "--lapsed-after", "1s")
    wait_for(lambda: status_of(seeded, run_id) in TERMINAL, 60, "another worker to take over")
    assert status_of(seeded, run_id) == "resolved"
    assert rows_of(home, run_id) == {"refunds": 1, "ticket_notes": 1, "escalations": 0,
                                     "mutation_ledger": 2}
    # The dead worker's job is retried once its heartbeat is stale: none is left doing.
    wait_for(lambda: set(drive_jobs(queue)) <= {"succeeded", "failed"}, 30,
             "the stalled job to be retried")
    log = survivor.stop()
    assert "stalled job(s) retried" in log or "lapsed run(s) enqueued" in log, log


@pytest.fixture(params=("sqlite", "postgres"))
def drain_home(request: pytest.FixtureRequest, queue: str, home: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    """The home the drain's workers share: the SQLite directory, or every store on PostgreSQL
    under a schema prefix of its own, made the operator's way (`signoff db upgrade`, then the
    sample data installed), the workers told through SIGNOFF_DATABASE_URL. They connect as the
    test server's owner role; the queue stays in its own schema either way."""
    if request.param == "sqlite":
        yield Home(home)
        return
    with pg_schemas() as (url, prefix):
        monkeypatch.setenv("SIGNOFF_DATABASE_URL", url)
        monkeypatch.setenv("SIGNOFF_DB_SCHEMA_PREFIX", prefix)
        upgraded = CliRunner().invoke(app, ["db", "upgrade"])
        assert upgraded.exit_code == 0, upgraded.output
        yield Home(home, database_url=url, schema_prefix=prefix)


def test_two_workers_drain_200_tickets_with_no_duplicate_mutation(
        drain_home: Home, queue: str, workers: Callable[..., Worker],
        capsys: pytest.CaptureFixture[str]) -> None:
    seeded = Runner(drain_home, recorder_factory=recorder_factory())
    seeded.ensure_domain_db(get_workflow("support"), reset=True)
    try:
        drain(drain_home, seeded, queue, workers, capsys)
    finally:
        seeded.close()


def drain(home: Home, seeded: Runner, queue: str, workers: Callable[..., Worker],
          capsys: pytest.CaptureFixture[str]) -> None:
    tickets = get_workflow("support").sample_tickets()
    pair = [workers(queue, "--lapsed-after", "60s"), workers(queue, "--lapsed-after", "60s")]
    for worker in pair:
        worker.wait_ready()
    started = time.perf_counter()
    run_ids = [seeded.register("support", tickets[i % len(tickets)],
                               requester="ops@signoff.local").run_id for i in range(200)]
    enqueue_all(queue, run_ids)

    def settled() -> dict[str, str]:
        rows = store_rows(home, "control", "SELECT run_id, status FROM runs")
        return {run_id: status for run_id, status in rows if status not in ("queued", "running")}

    wait_for(lambda: len(settled()) == 200, 90, "200 runs to be driven", every=0.5)
    drained = time.perf_counter() - started
    waiting = [run_id for run_id, status in settled().items() if status == "waiting_approval"]
    assert waiting  # TKT-1002's refunds wait for a lead
    for run_id in waiting:
        record = seeded.status(run_id)
        decided = seeded.decide(run_id, {"action": "approve", "by": LEAD, "reason": "ok"},
                                held=held_digest(record.pending), queue=True)
        assert decided.status == "queued"
    enqueue_all(queue, waiting)
    wait_for(lambda: len(settled()) == 200 and set(settled().values()) <= TERMINAL, 60,
             "the approved runs to end", every=0.5)
    total = time.perf_counter() - started
    with capsys.disabled():
        stores = "PostgreSQL" if home.database_url else "SQLite"
        print(f"\n200 tickets, 2 workers, stores on {stores}: registered, queued and driven "
              f"in {drained:.1f}s ({200 / drained:.1f} tickets/s); with {len(waiting)} "
              f"approvals resumed, all terminal in {total:.1f}s")

    statuses = settled()
    assert set(statuses) == set(run_ids) and set(statuses.values()) <= TERMINAL
    per_run = {table: dict(domain_rows(home, "support", f"SELECT run_id, COUNT(*) FROM {table}"
                                                        " GROUP BY run_id"))
               for table in MUTATION_TABLES}
    for run_id in run_ids:
        effects = sum(per_run[t].get(run_id, 0) for t in ("refunds", "ticket_notes",
                                                          "escalations"))
        assert per_run["mutation_ledger"].get(run_id, 0) == effects, run_id
        for table in ("refunds", "ticket_notes", "escalations"):
            assert per_run[table].get(run_id, 0) <= 1, (run_id, table)
    assert sum(per_run["refunds"].values()) >= 1
    logs = [worker.stop() for worker in pair]
    for log in logs:  # both took a share of the work, and stopped cleanly
        assert re.search(r"worker stopped; runs driven: \w+ \d+", log), log
    assert drive_jobs(queue) == {"succeeded": 200 + len(waiting)}


def test_the_retention_purge_prunes_finished_runs_checkpoints(runner: Runner) -> None:
    from types import SimpleNamespace

    from worker.tasks import ENV_KEY, RunnerPool, WorkerEnv, purge

    done = runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    waiting = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local")
    env = WorkerEnv(settings=QueueSettings(url="postgresql://unused", retention_s=0.0),
                    runners=RunnerPool(lambda: runner))
    context: Any = SimpleNamespace(additional_context={ENV_KEY: env})
    purged = purge(context, timestamp=0)
    assert purged["runs"] == 1 and purged["checkpoints"] > 0
    assert runner.state(done.run_id) == {}  # gone, and only the finished run's
    assert runner.state(waiting.run_id)["proposal"]["tool"] == "create_refund_request"


def test_decisions_with_a_queue_are_checked_as_without_one_and_recorded(
        queue: str, seeded: Runner, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CliRunner()
    runs = {action: seeded.start("support", sample("TKT-1002"),
                                 requester="ops@signoff.local").run_id
            for action in ("self", "stale", "reject", "edit")}
    refusals = {"self": ["approve", runs["self"], "--as", "ops@signoff.local"],
                "stale": ["approve", runs["stale"], "--as", LEAD, "--held", "0" * 32]}
    for name, argv in refusals.items():
        monkeypatch.setenv("SIGNOFF_QUEUE_URL", "off")
        without = cli.invoke(app, argv)
        monkeypatch.setenv("SIGNOFF_QUEUE_URL", queue)
        queued = cli.invoke(app, argv)
        assert (queued.exit_code, queued.stderr) == (without.exit_code, without.stderr) \
            and queued.exit_code == 1, name
        assert status_of(seeded, runs[name]) == "waiting_approval"
    assert drive_jobs(queue) == {}  # nothing enqueued for a refused decision

    rejected = cli.invoke(app, ["reject", runs["reject"], "--as", LEAD, "--reason", "no receipt"])
    edited = cli.invoke(app, ["edit", runs["edit"], "--as", LEAD,
                              "--args", '{"amount_cents": 4000}'])
    assert rejected.exit_code == edited.exit_code == 0, rejected.output + edited.output
    assert "decision recorded (reject by lead@acme.example)" in rejected.stdout
    assert "decision recorded (edit by lead@acme.example)" in edited.stdout
    assert drive_jobs(queue) == {"todo": 2}
    # What a worker's job does with them (tests above run real workers):
    after_reject = seeded.drive_queued(runs["reject"])
    after_edit = seeded.drive_queued(runs["edit"])
    assert after_reject is not None and after_reject.status == "rejected"
    assert after_edit is not None and after_edit.status == "resolved"
    with sqlite3.connect(home / "support.db") as conn:
        assert conn.execute("SELECT run_id, amount_cents FROM refunds WHERE run_id IN (?, ?)",
                            (runs["reject"], runs["edit"])).fetchall() == [(runs["edit"], 4000)]
