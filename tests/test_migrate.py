"""`signoff migrate`: a SQLite home moved to PostgreSQL keeps its runs, its audit chain (same
head), its traces and its ledger; a run interrupted under SQLite resumes under PostgreSQL, and
a run resolved there is not applied twice; a bad target is refused in one line, changing
nothing."""

from __future__ import annotations

import json
import operator
import sqlite3
import time
from pathlib import Path
from typing import Annotated

import psycopg
import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from checkpoints.migrate import copy_checkpoints
from checkpoints.saver import open_checkpointer
from graph.observe import recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tests.cli_calls import one_error_line, signoff
from tests.conftest import sample
from tests.pg import pg_schemas

LEAD = "lead@acme.example"


class _State(TypedDict):
    log: Annotated[list[str], operator.add]


def _ask(state: _State) -> dict[str, list[str]]:
    answer = interrupt("approve?")
    return {"log": [f"answer:{answer}"]}


def _graph() -> StateGraph[_State]:
    g = StateGraph(_State)
    g.add_node("first", lambda s: {"log": ["first"]})
    g.add_node("ask", _ask)
    g.add_edge(START, "first")
    g.add_edge("first", "ask")
    g.add_edge("ask", END)
    return g


def test_an_interrupted_thread_copied_to_postgres_resumes_there(tmp_path: Path) -> None:
    config = {"configurable": {"thread_id": "run-1"}}
    with open_checkpointer(tmp_path / "checkpoints.db") as sqlite_saver:
        app = _graph().compile(checkpointer=sqlite_saver)
        app.invoke({"log": []}, config, durability="sync")
        assert app.get_state(config).next == ("ask",)
        history = [s.config["configurable"]["checkpoint_id"] for s in app.get_state_history(config)]
        with pg_schemas() as (url, prefix):
            backend = Home(tmp_path, database_url=url, schema_prefix=prefix).open_backend()
            try:
                backend.upgrade()
                with backend.checkpointer() as pg_saver:
                    copied = copy_checkpoints(sqlite_saver, pg_saver)
                    assert copied.threads == 1 and copied.checkpoints == len(history)
                    assert copy_checkpoints(sqlite_saver, pg_saver).threads == 0  # no fork
                    pg_app = _graph().compile(checkpointer=pg_saver)
                    assert [s.config["configurable"]["checkpoint_id"]
                            for s in pg_app.get_state_history(config)] == history
                    state = pg_app.get_state(config)
                    assert state.next == ("ask",) and state.values["log"] == ["first"]
                    assert state.tasks[0].interrupts[0].value == "approve?"
                    result = pg_app.invoke(Command(resume="yes"), config, durability="sync")
                    assert result["log"] == ["first", "answer:yes"]
            finally:
                backend.close()


@pytest.fixture
def sqlite_home(home: Path) -> dict[str, str]:
    """A SQLite home with a resolved run (TKT-1001, one refund), a run waiting for approval
    (TKT-1002), their traces and audit entries."""
    runner = Runner(Home(home), recorder_factory=recorder_factory())
    runner.ensure_domain_db(get_workflow("support"), reset=True)
    done = runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    waiting = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local")
    runner.close()
    assert (done.status, waiting.status) == ("resolved", "waiting_approval")
    return {"done": done.run_id, "waiting": waiting.run_id}


def _traced_runs(*args: str) -> list[str]:
    result = signoff("traces", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line)["run_id"] for line in result.stdout.splitlines()]


def _refunds(url: str, prefix: str) -> dict[str, int]:
    """Refunds recorded per run in the Postgres support store's ledger (read as the owner)."""
    with psycopg.connect(url) as conn:
        return dict(conn.execute(
            f'SELECT run_id, count(*) FROM "{prefix}support".mutation_ledger'
            " WHERE tool = 'create_refund_request' GROUP BY run_id").fetchall())


def test_a_sqlite_home_migrated_to_postgres_goes_on_there(
        sqlite_home: dict[str, str], home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before_runs = signoff("runs")
    head = signoff("audit", "head").stdout.strip()
    traced, refunded = _traced_runs(), _traced_runs("--text", "refund")
    assert sqlite_home["done"] in refunded and sorted(traced) == sorted(sqlite_home.values())
    with pg_schemas() as (url, prefix):
        monkeypatch.setenv("SIGNOFF_DB_SCHEMA_PREFIX", prefix)
        moved = signoff("migrate", "--to", url)
        assert moved.exit_code == 0, moved.output
        lines = moved.stdout.splitlines()
        assert lines[0] == f"{home} -> {url} (schema prefix {prefix})"
        assert any(line.startswith("control: ") and "runs 2" in line for line in lines)
        assert any(line.startswith("support: ") and "mutation_ledger 2" in line
                   for line in lines)
        assert any(line.startswith("checkpoints: 2 thread(s), ") for line in lines)
        assert lines[-1].startswith("verified: audit ok (") and lines[-1].endswith(
            f"head {head}), runs 2 = 2")

        monkeypatch.setenv("SIGNOFF_DATABASE_URL", url)
        monkeypatch.setenv("SIGNOFF_QUEUE_URL", "off")  # decisions are driven here
        assert signoff("runs").stdout == before_runs.stdout
        verified = signoff("audit", "verify", "--head", head)
        assert verified.exit_code == 0, verified.output
        assert "audit log intact" in verified.stdout
        assert signoff("audit", "head").stdout.strip() == head
        assert _traced_runs() == traced and _traced_runs("--text", "refund") == refunded
        assert _refunds(url, prefix) == {sqlite_home["done"]: 1}

        approved = signoff("approve", sqlite_home["waiting"], "--as", LEAD, "--reason", "ok")
        assert approved.exit_code == 0, approved.output
        assert f"run {sqlite_home['waiting']}: resolved" in approved.stdout
        assert _refunds(url, prefix) == {sqlite_home["done"]: 1, sqlite_home["waiting"]: 1}
        # The new refund's id follows the copied ones (the id counters were carried over).
        with psycopg.connect(url) as conn:
            ids = [r[0] for r in conn.execute(
                f'SELECT refund_id FROM "{prefix}support".refunds ORDER BY refund_id')]
        assert len(ids) == len(set(ids))
        assert signoff("audit", "verify").exit_code == 0


def test_a_second_migrate_into_the_same_target_is_refused(
        sqlite_home: dict[str, str], home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with sqlite3.connect(home / "control.db") as conn:  # a parked batch, numbered 41
        conn.execute("INSERT INTO event_outbox (batch, run_id, events, error, parked_at)"
                     " VALUES (41, ?, '[]', 'disk full', 0)", (sqlite_home["done"],))
    with pg_schemas() as (url, prefix):
        monkeypatch.setenv("SIGNOFF_DB_SCHEMA_PREFIX", prefix)
        assert signoff("migrate", "--to", url).exit_code == 0
        with psycopg.connect(url) as conn:
            before = conn.execute(f'SELECT count(*) FROM "{prefix}audit".audit').fetchone()
            # The next batch parked on Postgres gets a number after the copied ones.
            assert conn.execute(f'INSERT INTO "{prefix}control".event_outbox (run_id, events,'
                                " error, parked_at) VALUES ('r', '[]', 'e', 0) RETURNING batch"
                                ).fetchone() == (42,)
            conn.rollback()
        again = signoff("migrate", "--to", url)
        assert again.exit_code == 1
        assert one_error_line(again) == (
            f"error: {url} (schema prefix {prefix}) already holds runs 2, "
            f"audit entries {before[0]}, checkpoints {again_checkpoints(url, prefix)}, "
            "support mutations 2: migrate copies into an empty target only; nothing was "
            "changed (pick another SIGNOFF_DB_SCHEMA_PREFIX, or drop those schemas)")
        with psycopg.connect(url) as conn:
            assert conn.execute(f'SELECT count(*) FROM "{prefix}audit".audit').fetchone() == before


def test_a_home_with_a_run_being_driven_is_refused(
        sqlite_home: dict[str, str], home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with sqlite3.connect(home / "control.db") as conn:
        conn.execute("UPDATE runs SET lease_owner = 'worker-1:42:abc', lease_expires = ?"
                     " WHERE run_id = ?", (time.time() + 300, sqlite_home["waiting"]))
    with pg_schemas() as (url, prefix):
        monkeypatch.setenv("SIGNOFF_DB_SCHEMA_PREFIX", prefix)
        refused = signoff("migrate", "--to", url)
        assert refused.exit_code == 1
        line = one_error_line(refused)
        assert line.startswith(f"error: run {sqlite_home['waiting']} is being driven by "
                               "worker-1:42:abc (lease for ")
        assert line.endswith(f"s more): stop every process using {home} first, then migrate")
        with psycopg.connect(url) as conn:  # the target was not touched: not even upgraded
            assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s",
                                (prefix + "%",)).fetchone() == (0,)


def test_a_migration_failing_midway_leaves_the_target_empty(
        sqlite_home: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import checkpoints.migrate as migrate

    real = migrate.copy_checkpoints

    def copy_then_lose_the_server(source, target):  # noqa: ANN001, ANN202
        real(source, target)  # the last store: every other one is written by now
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    with pg_schemas() as (url, prefix):
        monkeypatch.setenv("SIGNOFF_DB_SCHEMA_PREFIX", prefix)
        monkeypatch.setattr(migrate, "copy_checkpoints", copy_then_lose_the_server)
        failed = signoff("migrate", "--to", url)
        assert failed.exit_code == 3, failed.output
        assert one_error_line(failed) == ("error: database error: server closed the "
                                          "connection unexpectedly (SIGNOFF_DATABASE_URL)")
        with psycopg.connect(url) as conn:
            for table in ("control.runs", "audit.audit", "traces.runs",
                          "checkpoints.checkpoints"):
                schema, name = table.split(".")
                assert conn.execute(f'SELECT count(*) FROM "{prefix}{schema}".{name}'
                                    ).fetchone() == (0,), table
            assert conn.execute("SELECT to_regclass(%s)", (f'"{prefix}support".refunds',)
                                ).fetchone() == (None,)
        monkeypatch.setattr(migrate, "copy_checkpoints", real)
        again = signoff("migrate", "--to", url)  # nothing was left to refuse it
        assert again.exit_code == 0, again.output


def again_checkpoints(url: str, prefix: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute(
            f'SELECT count(*) FROM "{prefix}checkpoints".checkpoints').fetchone()[0])


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///tmp/x.db", "error: --to must be a postgresql:// URL, not 'sqlite:///tmp/x.db'"),
    ("postgresql://signoff:hunter2@127.0.0.1:1/nowhere",
     "error: cannot reach postgresql://signoff:***@127.0.0.1:1/nowhere: "),
], ids=["not-postgres", "unreachable"])
def test_a_bad_or_unreachable_target_is_3_in_one_line(
        sqlite_home: dict[str, str], url: str, expected: str) -> None:
    result = signoff("migrate", "--to", url)
    assert result.exit_code == 3, result.output
    line = one_error_line(result)
    assert line.startswith(expected) and "hunter2" not in line


def test_a_home_with_no_data_is_refused(home: Path) -> None:
    # The home is looked at before the target: no server is needed to be told this.
    result = signoff("migrate", "--to", "postgresql://postgres@127.0.0.1:5432/test")
    assert result.exit_code == 1
    assert one_error_line(result) == (
        f"error: {home} holds no signoff data (no control.db): nothing to migrate "
        "(SIGNOFF_HOME names the data directory)")
