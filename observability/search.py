"""Search runs by id, customer, tool, outcome, free text and time range (the same runs on
SQLite, through FTS5, and on PostgreSQL, through tsvector; see observability.schema)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from observability.db import StoreSource
from observability.reader import open_traces
from observability.schema import TEXT_MATCH, query_phrases

RUN_COLUMNS = (
    "run_id",
    "workflow",
    "workflow_version",
    "team",
    "tenant_id",
    "customer_id",
    "ticket_id",
    "outcome",
    "reason",
    "started_at",
    "finished_at",
)


def _has_index(conn: Any, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                        (name,)).fetchone() is not None


def _timestamp(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    return value.timestamp()


def search_traces(
    source: StoreSource,
    *,
    run_id: str | None = None,
    customer_id: str | None = None,
    tool: str | None = None,
    outcome: str | None = None,
    text: str | None = None,
    since: datetime | float | None = None,
    until: datetime | float | None = None,
    limit: int = 50,
    tenant_ids: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Runs matching every given filter, newest first, each with its total cost_usd.

    `source` is a Home, a Backend or a SQLite data directory. `text` is matched as literal
    words (a "quoted phrase" as those words in order) against the redacted inputs, tool
    arguments and results, errors and decision reasons; text with no word matches nothing.
    `since`/`until` bound the run's start time. `tenant_ids`, when given, keeps only runs
    of those tenants.
    """
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("r.run_id", run_id),
        ("r.customer_id", customer_id),
        ("r.outcome", outcome),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if tool is not None:
        # EXISTS walks runs newest first and stops at `limit`; IN (...) built the whole set of
        # runs that ever called the tool first (1.5 s p95 at 1M runs, see docs/benchmarks.md).
        where.append("EXISTS (SELECT 1 FROM tool_calls t WHERE t.run_id = r.run_id"
                     " AND t.tool = ?)")
        params.append(tool)
    if tenant_ids is not None:
        where.append(f"r.tenant_id IN ({', '.join('?' * len(tenant_ids))})" if tenant_ids
                     else "1 = 0")
        params.extend(tenant_ids)
    if since is not None:
        where.append("r.started_at >= ?")
        params.append(_timestamp(since))
    if until is not None:
        where.append("r.started_at < ?")
        params.append(_timestamp(until))
    source_sql = "runs r"
    with open_traces(source) as store:
        conn = store.conn
        phrases = query_phrases(text) if text else []
        if text and not phrases:
            where.append("1 = 0")  # blank or only quotes: no word to match
        elif text:
            match = TEXT_MATCH[store.dialect]
            condition, match_params = match.condition(phrases)
            where.append(condition)
            params.extend(match_params)
            if (run_id, customer_id, outcome, tool) == (None, None, None, None) and \
                    match.walk_by_start and _has_index(conn, match.walk_by_start):
                # Walk runs newest first and stop at `limit`: a common word matches thousands
                # of runs, and sorting them all by time was the long tail at 1M runs.
                source_sql = f"runs r INDEXED BY {match.walk_by_start}"
        sql = (
            f"SELECT {', '.join('r.' + c for c in RUN_COLUMNS)},"
            " (SELECT sum(cost_usd) FROM model_calls m WHERE m.run_id = r.run_id) AS cost_usd"
            f" FROM {source_sql} {'WHERE ' + ' AND '.join(where) if where else ''}"
            " ORDER BY r.started_at DESC, r.run_id LIMIT ?"
        )
        return [dict(row) for row in conn.execute(sql, [*params, limit])]
