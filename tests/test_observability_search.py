from datetime import UTC, datetime
from pathlib import Path

import pytest

from graph.runner import Home
from observability import Recorder, purge, search_traces, verify_audit
from observability.db import StoreError
from observability.testing import FakeClock, ToolSpec, record_run
from tests.stores import execute

DAY = 86_400.0
T0 = 1_700_000_000.0


@pytest.fixture
def traced(backend_home: Home) -> Home:
    """Three recorded runs, on each backend of the grid."""
    clock = FakeClock(now=T0)
    recorder = Recorder(backend_home, clock=clock)
    record_run(
        recorder,
        "old",
        customer_id="C-1",
        outcome="resolved",
        inputs={"message": "parcel never arrived, email me at old@example.com"},
        tool_calls=[ToolSpec("lookup_order", args={"order_id": "A-1"})],
    )
    clock.now = T0 + 10 * DAY
    record_run(
        recorder,
        "mid",
        customer_id="C-2",
        outcome="escalated",
        reason="refund over limit",
        model_calls=[("gpt-4o", 1_000_000, 0, 1.0)],
        tool_calls=[ToolSpec("refund", mutation=True, args={"amount": 250})],
        decisions=[("gate", "yellow", "R-LIMIT", "amount above the auto-approve limit")],
    )
    clock.now = T0 + 20 * DAY
    record_run(
        recorder,
        "new",
        customer_id="C-1",
        outcome="resolved",
        inputs={"message": "Where is my parcel?"},
        tool_calls=[ToolSpec("lookup_order", result={"status": "shipped"})],
    )
    recorder.close()
    return backend_home


def ids(rows: list[dict]) -> list[str]:
    return [row["run_id"] for row in rows]


def test_filters_combine_and_results_are_newest_first(traced: Home) -> None:
    assert ids(search_traces(traced)) == ["new", "mid", "old"]
    assert ids(search_traces(traced, customer_id="C-1")) == ["new", "old"]
    assert ids(search_traces(traced, tool="refund")) == ["mid"]
    assert ids(search_traces(traced, outcome="resolved", tool="lookup_order")) == ["new", "old"]
    assert ids(search_traces(traced, run_id="mid")) == ["mid"]
    assert ids(search_traces(traced, limit=1)) == ["new"]


def test_free_text_searches_inputs_tool_calls_and_reasons(traced: Home) -> None:
    assert ids(search_traces(traced, text="parcel")) == ["new", "old"]
    assert ids(search_traces(traced, text="shipped")) == ["new"]
    assert ids(search_traces(traced, text="auto-approve limit")) == ["mid"]
    assert ids(search_traces(traced, text='"unbalanced quote (')) == []  # no FTS syntax error


def test_free_text_returns_the_newest_matches_first_up_to_the_limit(backend_home: Home) -> None:
    # More matches than the limit, started out of insertion order, matched through each of
    # the three indexed tables: the walk by start time must still give the newest ones.
    clock = FakeClock(now=T0)
    recorder = Recorder(backend_home, clock=clock)
    starts = [(n * 7919) % 60 for n in range(60)]  # a permutation of 0..59
    for n, start in enumerate(starts):
        clock.now = T0 + start * DAY
        where = n % 3
        record_run(recorder, f"r{start:02d}", customer_id="C-1", outcome="resolved",
                   inputs={"message": "kettle" if where == 0 else "hello"},
                   tool_calls=[ToolSpec("lookup_order",
                                        result={"note": "kettle" if where == 1 else "ok"})],
                   decisions=[("gate", "green", "R", "kettle" if where == 2 else "fine")])
        clock.now = T0 + start * DAY + 1
        record_run(recorder, f"x{start:02d}", customer_id="C-2", outcome="resolved",
                   inputs={"message": "toaster"})
    recorder.close()
    newest = [f"r{start:02d}" for start in range(59, 9, -1)]
    assert ids(search_traces(backend_home, text="kettle", limit=50)) == newest
    assert ids(search_traces(backend_home, text="kettle", customer_id="C-1", limit=5)) == newest[:5]
    assert ids(search_traces(backend_home, text="kettle", since=T0 + 55 * DAY)) == newest[:5]


def test_free_text_only_sees_redacted_text(traced: Home) -> None:
    assert search_traces(traced, text="old@example.com") == []
    assert ids(search_traces(traced, text="EMAIL")) == ["old"]


def test_time_range_and_cost(traced: Home) -> None:
    since = datetime.fromtimestamp(T0 + 5 * DAY, tz=UTC)
    rows = search_traces(traced, since=since, until=T0 + 15 * DAY)
    assert ids(rows) == ["mid"]
    assert rows[0]["cost_usd"] == 2.5
    assert rows[0]["reason"] == "refund over limit"


def test_purge_removes_old_runs_with_their_events_and_keeps_the_audit_verifiable(
    traced: Home,
) -> None:
    result = purge(traced, 15, clock=lambda: T0 + 30 * DAY)  # cutoff: day 15
    assert (result.runs_deleted, result.events_deleted) == (
        2,
        4,
    )  # old: 1 tool call; mid: model, tool, decision
    assert result.audit_entries_deleted > 0
    assert ids(search_traces(traced)) == ["new"]
    for table in ("model_calls", "tool_calls", "decisions"):
        runs = {r[0] for r in execute(traced, "traces", f"SELECT run_id FROM {table}")}
        assert runs <= {"new"}
    assert search_traces(traced, text="limit") == []  # the FTS index forgot them too
    assert verify_audit(traced).ok


def test_missing_or_corrupt_trace_store_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        search_traces(tmp_path)
    assert not (tmp_path / "traces.db").exists()  # searching does not create it
    (tmp_path / "traces.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreError, match="cannot read"):
        search_traces(tmp_path)


def test_a_trace_store_made_before_schemas_were_versioned_opens_as_it_is(tmp_path: Path) -> None:
    # The store as earlier releases made it: sqlite-utils' DDL, FTS5 with its triggers, one
    # run in it, and no signoff_schema table.
    import sqlite_utils

    from observability.schema import FTS_COLUMNS, INDEXES, TABLES

    db = sqlite_utils.Database(tmp_path / "traces.db")
    kinds = {"TEXT": str, "REAL": float, "INTEGER": int}
    for table, columns in TABLES.items():
        db.table(table).create({name: kinds[kind] for name, kind in columns},
                               pk="run_id" if table == "runs" else ("run_id", "event_key"))
    for table, column in INDEXES:
        db.table(table).create_index([column])
    for table, columns in FTS_COLUMNS.items():
        db.table(table).enable_fts(columns, create_triggers=True)
    db.table("runs").insert({"run_id": "before", "workflow": "support", "started_at": T0,
                             "inputs": '{"message":"kettle arrived broken"}'})
    db.close()

    with Recorder(tmp_path, clock=FakeClock(now=T0 + DAY)) as recorder:
        record_run(recorder, "after", inputs={"message": "kettle still broken"})
    assert ids(search_traces(tmp_path, text="kettle broken")) == ["after", "before"]
    assert verify_audit(tmp_path).ok
