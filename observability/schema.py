"""The trace store's tables per dialect (one definition, two DDLs) and how free text is
matched on each: FTS5 on SQLite, a generated tsvector column with a GIN index on PostgreSQL.

SQLite v1 is the DDL the store always had (it was made with sqlite-utils), every statement
IF NOT EXISTS, so a data directory written before the schema was versioned opens as it is.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from checkpoints.backend import Schema, apply_migrations, register_schema
from observability.db import TRACES

_EVENT = (("run_id", "TEXT"), ("event_key", "TEXT"), ("at", "REAL"))
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "runs": (("run_id", "TEXT"), ("workflow", "TEXT"), ("workflow_version", "TEXT"),
             ("policy_version", "TEXT"), ("tenant_id", "TEXT"), ("team", "TEXT"),
             ("requester", "TEXT"), ("customer_id", "TEXT"), ("ticket_id", "TEXT"),
             ("inputs", "TEXT"), ("started_at", "REAL"), ("finished_at", "REAL"),
             ("outcome", "TEXT"), ("reason", "TEXT"), ("first_warning_at", "REAL"),
             ("fallback_at", "REAL")),
    "model_calls": (*_EVENT, ("node", "TEXT"), ("model", "TEXT"), ("tokens_in", "INTEGER"),
                    ("tokens_out", "INTEGER"), ("latency_s", "REAL"), ("cost_usd", "REAL")),
    "tool_calls": (*_EVENT, ("step", "TEXT"), ("tool", "TEXT"), ("args", "TEXT"),
                   ("result", "TEXT"), ("error", "TEXT"), ("schema_valid", "INTEGER"),
                   ("ok", "INTEGER"), ("latency_s", "REAL"), ("mutation", "INTEGER")),
    "decisions": (*_EVENT, ("step", "TEXT"), ("kind", "TEXT"), ("verdict", "TEXT"),
                  ("rule_id", "TEXT"), ("reason", "TEXT"), ("actor", "TEXT"), ("data", "TEXT")),
    "evidence": (*_EVENT, ("source", "TEXT"), ("ref", "TEXT")),
}
INDEXES = (("runs", "started_at"), ("runs", "customer_id"), ("tool_calls", "tool"))

# Free-text search covers these (already redacted) columns.
FTS_COLUMNS = {
    "runs": ["inputs", "reason"],
    "tool_calls": ["tool", "args", "result", "error"],
    "decisions": ["kind", "verdict", "rule_id", "reason", "data"],
}


def _key(table: str) -> tuple[str, ...]:
    return ("run_id",) if table == "runs" else ("run_id", "event_key")


def _sqlite_v1() -> str:
    statements = []
    for table, columns in TABLES.items():
        body = [f'"{name}" {kind}' + (" PRIMARY KEY" if _key(table) == (name,) else "")
                for name, kind in columns]
        if len(_key(table)) > 1:
            body.append(f"PRIMARY KEY ({', '.join(f'{chr(34)}{k}{chr(34)}' for k in _key(table))})")
        statements.append(f'CREATE TABLE IF NOT EXISTS "{table}" ({", ".join(body)})')
    statements += [f'CREATE INDEX IF NOT EXISTS "idx_{t}_{c}" ON "{t}" ("{c}")'
                   for t, c in INDEXES]
    for table, indexed in FTS_COLUMNS.items():
        names = ", ".join(f'"{c}"' for c in indexed)
        new = ", ".join(f'new."{c}"' for c in indexed)
        old = ", ".join(f'old."{c}"' for c in indexed)
        fts = f'"{table}_fts"'
        add = f"INSERT INTO {fts} (rowid, {names}) VALUES (new.rowid, {new});"
        remove = f"INSERT INTO {fts} ({fts}, rowid, {names}) VALUES('delete', old.rowid, {old});"
        statements += [
            f'CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING FTS5 ({names}, content="{table}")',
            # Trigger bodies keep their `;` off the line end: scripts split on ";\n".
            f'CREATE TRIGGER IF NOT EXISTS "{table}_ai" AFTER INSERT ON "{table}" BEGIN {add} END',
            f'CREATE TRIGGER IF NOT EXISTS "{table}_ad" AFTER DELETE ON "{table}" BEGIN {remove}'
            " END",
            f'CREATE TRIGGER IF NOT EXISTS "{table}_au" AFTER UPDATE ON "{table}" BEGIN {remove}'
            f" {add} END",
        ]
    return ";\n".join(statements)


_PG_TYPES = {"TEXT": "TEXT", "REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT"}


def _words(column: str) -> str:
    """A column as FTS5's unicode61 tokenizer splits it: runs of letters and digits."""
    return f"regexp_replace(coalesce({column}, ''), '[^[:alnum:]]+', ' ', 'g')"


def _postgres_v1() -> str:
    statements = []
    for table, columns in TABLES.items():
        # run_id and event_key compare bytewise ("C"), as SQLite does: ties on started_at
        # come out in the same order on both.
        body = [f"{name} {_PG_TYPES[kind]}" + (' COLLATE "C"' if name in _key(table) else "")
                for name, kind in columns]
        if table in FTS_COLUMNS:
            text = " || ' ' || ".join(_words(c) for c in FTS_COLUMNS[table])
            body.append(f"search tsvector GENERATED ALWAYS AS (to_tsvector('simple', {text}))"
                        " STORED")
        body.append(f"PRIMARY KEY ({', '.join(_key(table))})")
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(body)})")
    statements += [f"CREATE INDEX IF NOT EXISTS idx_{t}_{c} ON {t} ({c})" for t, c in INDEXES]
    statements += [f"CREATE INDEX IF NOT EXISTS idx_{t}_search ON {t} USING GIN (search)"
                   for t in FTS_COLUMNS]
    return ";\n".join(statements)


TRACE_SCHEMA = register_schema(Schema(TRACES, {"sqlite": [_sqlite_v1()],
                                               "postgres": [_postgres_v1()]}))


def ensure_trace_schema(conn: sqlite3.Connection) -> None:
    """Create the trace tables, indexes and FTS5 indexes on a bare SQLite connection."""
    apply_migrations(conn, "sqlite", begin=lambda: conn.execute("BEGIN IMMEDIATE"),
                     commit=lambda: conn.execute("COMMIT"), stores=[TRACES])


# Whitespace separates words; a "quoted phrase" stays one (sqlite-utils' quote_fts).
_QUERY_BITS = re.compile(r'\s+|(".*?")')


def query_phrases(text: str) -> list[str]:
    """`text` as the phrases every match must contain, quotes removed: plain words only,
    so nothing a user types is search syntax on either database."""
    if text.count('"') % 2:
        text += '"'
    bits = [bit.strip('"') for bit in _QUERY_BITS.split(text) if bit and bit != '""']
    return [bit for bit in bits if bit]


def _fts5_match(phrases: Sequence[str]) -> tuple[str, list[str]]:
    # One FTS5 query, every phrase a string (implicit AND): nothing in it is FTS5 syntax.
    return "?", [" ".join('"' + p.replace('"', '""') + '"' for p in phrases)]


def _tsquery_match(phrases: Sequence[str]) -> tuple[str, list[str]]:
    # The same words as FTS5 sees them (runs of letters and digits, case folded), each
    # phrase its words in order, all ANDed; bound parameters, never tsquery syntax.
    return " && ".join(f"phraseto_tsquery('simple', {_words('?')})" for _ in phrases), [
        *phrases]


@dataclass(frozen=True)
class TextMatch:
    """How one dialect finds the runs whose indexed text holds every phrase."""

    key: str
    """The runs column the matches are given as (rowid or run_id)."""
    tables: dict[str, str]
    """Per indexed table, SQL selecting matching runs' keys, `{match}` formatted in."""
    match: Callable[[Sequence[str]], tuple[str, list[str]]]
    walk_by_start: str | None
    """An index to walk runs newest first by, when only text (and time) filter."""

    def condition(self, phrases: Sequence[str]) -> tuple[str, list[str]]:
        """`r.<key> IN (...)` over the three indexed tables, and its parameters."""
        match, params = self.match(phrases)
        union = " UNION ".join(sql.format(match=match) for sql in self.tables.values())
        return f"r.{self.key} IN ({union})", params * len(self.tables)


TEXT_MATCH = {
    # The matching runs as rowids: runs_fts shares the runs table's rowids; the other
    # tables' hits are mapped to their run through the run_id index.
    "sqlite": TextMatch(
        key="rowid",
        tables={table: "SELECT rowid FROM runs_fts WHERE runs_fts MATCH {match}"
                if table == "runs" else
                f"SELECT x.rowid FROM {table} t JOIN {table}_fts f ON f.rowid = t.rowid"
                f" JOIN runs x ON x.run_id = t.run_id WHERE {table}_fts MATCH {{match}}"
                for table in FTS_COLUMNS},
        match=_fts5_match, walk_by_start="idx_runs_started_at"),
    # The GIN index on each table's generated `search` column answers its part.
    "postgres": TextMatch(
        key="run_id",
        tables={table: f"SELECT run_id FROM {table} WHERE search @@ ({{match}})"
                for table in FTS_COLUMNS},
        match=_tsquery_match, walk_by_start=None),
}
