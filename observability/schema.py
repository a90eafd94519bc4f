"""The trace store's tables, created idempotently with sqlite-utils."""

from __future__ import annotations

import sqlite3

import sqlite_utils

# Free-text search covers these (already redacted) columns.
FTS_COLUMNS = {
    "runs": ["inputs", "reason"],
    "tool_calls": ["tool", "args", "result", "error"],
    "decisions": ["kind", "verdict", "rule_id", "reason", "data"],
}


def ensure_trace_schema(conn: sqlite3.Connection) -> None:
    """Create the trace tables, indexes and FTS5 indexes if they do not exist."""
    db = sqlite_utils.Database(conn)
    if db.table("runs").exists():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if db.table("runs").exists():  # another process won the race
            conn.execute("COMMIT")
            return
        db.table("runs").create(
            {
                "run_id": str,
                "workflow": str,
                "workflow_version": str,
                "policy_version": str,
                "tenant_id": str,
                "team": str,
                "requester": str,
                "customer_id": str,
                "ticket_id": str,
                "inputs": str,
                "started_at": float,
                "finished_at": float,
                "outcome": str,
                "reason": str,
                "first_warning_at": float,
                "fallback_at": float,
            },
            pk="run_id",
        )
        event = {"run_id": str, "event_key": str, "at": float}
        db.table("model_calls").create(
            {
                **event,
                "node": str,
                "model": str,
                "tokens_in": int,
                "tokens_out": int,
                "latency_s": float,
                "cost_usd": float,
            },
            pk=("run_id", "event_key"),
        )
        db.table("tool_calls").create(
            {
                **event,
                "step": str,
                "tool": str,
                "args": str,
                "result": str,
                "error": str,
                "schema_valid": int,
                "ok": int,
                "latency_s": float,
                "mutation": int,
            },
            pk=("run_id", "event_key"),
        )
        db.table("decisions").create(
            {
                **event,
                "step": str,
                "kind": str,
                "verdict": str,
                "rule_id": str,
                "reason": str,
                "actor": str,
                "data": str,
            },
            pk=("run_id", "event_key"),
        )
        db.table("evidence").create(
            {**event, "source": str, "ref": str}, pk=("run_id", "event_key")
        )
        db.table("runs").create_index(["started_at"])
        db.table("runs").create_index(["customer_id"])
        db.table("tool_calls").create_index(["tool"])
        for table, columns in FTS_COLUMNS.items():
            db.table(table).enable_fts(columns, create_triggers=True)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
