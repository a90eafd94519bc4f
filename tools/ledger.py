"""The idempotency ledger: a mutation and its key commit in one transaction of the domain database.

LangGraph re-runs a node from its top on resume and re-runs later nodes on replay, so
exactly-once must come from here. `commit_once` opens a write transaction on the domain
database (tools.common.begin_write: BEGIN IMMEDIATE on SQLite, the domain's advisory lock on
PostgreSQL), returns the recorded result when the key is already there, and otherwise runs the
tool and inserts the key before committing. A crash before the commit leaves neither the
effect nor the key; a crash after it leaves both.

Verify at commit: `commit_once(checks=...)` runs the caller's checks inside that transaction,
after the write lock is taken and before the effect, so they read the database as it is when
the effect lands (another process's refund committed a moment ago included). A check that
refuses raises `CommitRefused` and nothing is written.

External effects (a payments API) cannot join that transaction: `commit_external` records a
pending intent before the call and confirms it, with the system's id, in the transaction
that writes the ledger key; a pending intent is reconciled by asking the system about the key.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from checkpoints.sql import Connection, dialect_of
from tools.base import ExternalCall
from tools.common import begin_write

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS mutation_ledger (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    tool TEXT NOT NULL,
    args TEXT NOT NULL,
    result TEXT NOT NULL,
    committed_at {real} NOT NULL,
    tenant_id TEXT,
    customer_id TEXT
)
"""
LEDGER_SCHEMA = _LEDGER_DDL.format(real="REAL")
LEDGER_INDEX = ("CREATE INDEX IF NOT EXISTS mutation_ledger_scope"
                " ON mutation_ledger (tenant_id, tool, committed_at)")
SCOPE_COLUMNS = ("tenant_id", "customer_id")
"""Who a mutation was made for: what cumulative limits (verifiers.aggregates) group by.
Added to ledgers created before them; rows from then have NULL there."""

_INTENT_DDL = """
CREATE TABLE IF NOT EXISTS external_intents (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    tool TEXT NOT NULL,
    system TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed')),
    external_id TEXT,
    created_at {real} NOT NULL,
    confirmed_at {real},
    tenant_id TEXT
)
"""
INTENT_SCHEMA = _INTENT_DDL.format(real="REAL")


@dataclass(frozen=True)
class LedgerDialect:
    """The ledger's SQL that differs between SQLite and PostgreSQL; everything else is shared."""

    tables: Mapping[str, str]
    """Table -> CREATE statement, for the tables `ensure_ledger` creates when missing."""
    in_transaction: tuple[str, ...]
    """CREATE ... IF NOT EXISTS run inside each commit, keeping a SQLite ledger self-contained
    (a file built by any tool gets its ledger with its first mutation). None on Postgres: the
    owner installs the tables, and the worker role may not create any."""
    table_exists: str
    columns: str
    arg_number: str
    """The numeric value of argument {name} of a ledger row's args (JSON text)."""
    arg_equals: str
    """Argument {name} of a ledger row's args equals the parameter."""
    arg_param: Callable[[Any], Any]
    """The parameter `arg_equals` compares with, from the Python value."""


LEDGER_DIALECTS: dict[str, LedgerDialect] = {
    "sqlite": LedgerDialect(
        tables={"mutation_ledger": LEDGER_SCHEMA},
        in_transaction=(LEDGER_SCHEMA,),
        table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
        columns="SELECT name FROM pragma_table_info(?)",
        arg_number="json_extract(args, '$.{name}')",
        arg_equals="json_extract(args, '$.{name}') = ?",
        arg_param=lambda value: value),
    "postgres": LedgerDialect(
        tables={"mutation_ledger": _LEDGER_DDL.format(real="DOUBLE PRECISION"),
                "external_intents": _INTENT_DDL.format(real="DOUBLE PRECISION")},
        in_transaction=(),
        table_exists="SELECT 1 WHERE to_regclass(?) IS NOT NULL",
        columns="SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ?",
        arg_number="(args::jsonb ->> '{name}')::numeric",
        arg_equals="(args::jsonb -> '{name}') = ?::jsonb",
        arg_param=lambda value: canonical_json(value)),
}
LEDGER_TABLES = ("mutation_ledger", "external_intents")
"""The ledger's tables in a domain database (both hold a tenant column)."""


def ledger_dialect(conn: Connection) -> LedgerDialect:
    return LEDGER_DIALECTS[dialect_of(conn)]


def _has_table(conn: Connection, table: str) -> bool:
    return conn.execute(ledger_dialect(conn).table_exists, (table,)).fetchone() is not None


def canonical_json(value: Any) -> str:
    """Stable JSON: sorted keys, no whitespace; equal arguments give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def call_digest(tool: str, args: dict[str, Any] | None) -> str:
    """Fingerprint of one proposed call; the gate and the verifier stamp the call they judged
    with it, so execute can refuse a call whose arguments changed afterwards."""
    return hashlib.sha256(f"{tool}\x1f{canonical_json(args)}".encode()).hexdigest()[:24]


def idempotency_key(run_id: str, step: int, tool: str, args: dict[str, Any]) -> str:
    """Derived from the run, the step and the canonical arguments: a replay of the same step
    gets the same key, an edited action (other arguments) a new one."""
    material = f"{run_id}\x1f{step}\x1f{tool}\x1f{canonical_json(args)}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


Refusal = tuple[str, str]
"""(rule_id, reason) of a check that refused a mutation at commit."""


class CommitRefused(Exception):
    """A check run inside the commit transaction refused the mutation; nothing was written."""

    def __init__(self, rule_id: str, reason: str) -> None:
        super().__init__(f"{rule_id}: {reason}")
        self.rule_id = rule_id
        self.reason = reason


@dataclass(frozen=True)
class LedgerOutcome:
    """What commit_once did."""

    result: dict[str, Any]
    replayed: bool
    """True when the key was already committed and the recorded result was returned."""


def ensure_ledger(conn: Connection) -> None:
    """Create the ledger's tables if they are missing; a read when they exist, so that
    processes opening the database at the same time do not contend for the write lock. A ledger
    written by an earlier version gains its scope columns (their old rows have NULL there)."""
    dialect = ledger_dialect(conn)
    for table, ddl in dialect.tables.items():
        if not _has_table(conn, table):
            conn.execute(ddl)
            if table == "mutation_ledger":
                conn.execute(LEDGER_INDEX)
    upgrades = (("mutation_ledger", SCOPE_COLUMNS), ("external_intents", ("tenant_id",)))
    for table, wanted in upgrades:
        if not _has_table(conn, table):
            continue  # external_intents: created with the first external effect
        columns = {row[0] for row in conn.execute(dialect.columns, (table,))}
        missing = [c for c in wanted if c not in columns]
        for column in missing:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
        if missing and table == "mutation_ledger":
            conn.execute(LEDGER_INDEX)
    if conn.in_transaction:
        conn.commit()


def recorded(conn: Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT result FROM mutation_ledger WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def commit_once(conn: Connection, *, key: str, run_id: str, step: int, tool: str,
                args: dict[str, Any], apply: Callable[[], BaseModel],
                clock: Callable[[], float] = time.time,
                before_commit: Callable[[], None] | None = None,
                checks: Callable[[], Refusal | None] | None = None,
                tenant_id: str | None = None, customer_id: str | None = None) -> LedgerOutcome:
    """Apply a mutation at most once per key. Exceptions from `apply` roll everything back.

    `checks` runs inside the transaction, before the effect (never for a replayed key: that
    mutation already passed them when it committed); a refusal it returns rolls back and
    raises CommitRefused. `tenant_id` / `customer_id` are recorded with the key.
    `before_commit` is a fault-injection seam: it runs after the effect and the key are written
    and before COMMIT, so tests can kill the process at the worst moment.
    """
    begin_write(conn)
    try:
        for ddl in ledger_dialect(conn).in_transaction:
            conn.execute(ddl)  # a no-op once it exists; keeps the ledger self-contained
        previous = recorded(conn, key)
        if previous is not None:
            conn.rollback()
            return LedgerOutcome(previous, replayed=True)
        refusal = checks() if checks is not None else None
        if refusal is not None:
            raise CommitRefused(*refusal)  # rolled back below
        result = apply().model_dump(mode="json")
        conn.execute(
            "INSERT INTO mutation_ledger (key, run_id, step, tool, args, result, committed_at,"
            " tenant_id, customer_id) VALUES (?,?,?,?,?,?,?,?,?)",
            (key, run_id, step, tool, canonical_json(args), canonical_json(result), clock(),
             tenant_id, customer_id),
        )
        if before_commit is not None:
            before_commit()
        conn.commit()
        return LedgerOutcome(result, replayed=False)
    except BaseException:
        conn.rollback()
        raise


def committed_total(conn: Connection, *, tools: Sequence[str], tenant_id: str,
                    since: float | None = None, customer_id: str | None = None,
                    same_args: Mapping[str, Any] | None = None,
                    sum_arg: str | None = None) -> int:
    """Sum of argument `sum_arg` (or the count, when None) over the tenant's committed
    mutations of `tools`, optionally only those for `customer_id`, those whose arguments
    equal `same_args`, and those committed at or after `since`. Read in the caller's
    transaction, so at commit it sees every mutation committed before this one."""
    dialect = ledger_dialect(conn)
    if not _has_table(conn, "mutation_ledger"):
        return 0  # commit_once creates the ledger with its first mutation: none yet
    # Argument names are JSON paths here: only identifiers (verifiers.policy checks them).
    for name in (*(same_args or {}), *([sum_arg] if sum_arg else [])):
        if not name.isidentifier():
            raise ValueError(f"not an argument name: {name!r}")
    measure = (f"COALESCE(SUM({dialect.arg_number.format(name=sum_arg)}), 0)" if sum_arg
               else "COUNT(*)")
    sql = [f"SELECT {measure} FROM mutation_ledger WHERE tenant_id = ?",
           f"AND tool IN ({', '.join('?' * len(tools))})"]
    params: list[Any] = [tenant_id, *tools]
    if customer_id is not None:
        sql.append("AND customer_id = ?")
        params.append(customer_id)
    if since is not None:
        sql.append("AND committed_at >= ?")
        params.append(since)
    for name, value in (same_args or {}).items():
        sql.append("AND " + dialect.arg_equals.format(name=name))
        params.append(dialect.arg_param(value))
    return int(conn.execute(" ".join(sql), params).fetchone()[0])


# External effects ----------------------------------------------------------------------------
# An effect in another system cannot share the ledger's transaction, so it is bracketed by two:
# the intent (checks passed, key reserved) commits before the call, the confirmation (the
# system's id, the local trace, the ledger key) after it. A pending intent found later means
# "the call may or may not have landed": it is reconciled by asking the system about the key.

def intent_status(conn: Connection, key: str) -> tuple[str, str | None] | None:
    """(status, external id) of the intent recorded for `key`, or None."""
    if not _has_table(conn, "external_intents"):
        return None
    row = conn.execute("SELECT status, external_id FROM external_intents WHERE key = ?",
                       (key,)).fetchone()
    return (row[0], row[1]) if row else None


def commit_external(conn: Connection, *, key: str, run_id: str, step: int, tool: str,
                    args: dict[str, Any], call: ExternalCall,
                    clock: Callable[[], float] = time.time,
                    point: Callable[[str], None] | None = None,
                    checks: Callable[[], Refusal | None] | None = None,
                    tenant_id: str | None = None,
                    customer_id: str | None = None) -> LedgerOutcome:
    """Apply an external effect at most once per key, as far as the system honours the key.

    1. One transaction: a committed key replays; else `checks` run (a refusal raises
       CommitRefused) and a pending intent is recorded. 2. Outside any transaction: a pending
       intent left by an earlier attempt is reconciled with `call.lookup()`; only when the
       system has no record is `call.perform()` made (forwarding the key). 3. One transaction:
       `call.apply(record)` writes the local trace, the ledger key is inserted and the intent
       marked confirmed with the system's id. An exception anywhere leaves the intent pending
       and nothing confirmed. `point(name)` is the crash-test seam ("before_call",
       "after_response", "before_commit").
    """
    hook = point or (lambda _name: None)
    dialect = ledger_dialect(conn)
    begin_write(conn)
    try:
        for ddl in dialect.in_transaction:
            conn.execute(ddl)
        if dialect.in_transaction:
            conn.execute(INTENT_SCHEMA)
            _add_intent_tenant(conn)
        previous = recorded(conn, key)
        if previous is not None:
            conn.rollback()
            return LedgerOutcome(previous, replayed=True)
        pending = intent_status(conn, key) is not None
        if not pending:
            # Checked once, when the intent is taken: a pending intent may already have
            # landed, and refusing it then would hide an effect that exists.
            refusal = checks() if checks is not None else None
            if refusal is not None:
                raise CommitRefused(*refusal)
            conn.execute(
                "INSERT INTO external_intents (key, run_id, step, tool, system, request,"
                " status, created_at, tenant_id) VALUES (?,?,?,?,?,?,'pending',?,?)",
                (key, run_id, step, tool, call.system, canonical_json(call.request), clock(),
                 tenant_id))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    record = call.lookup() if pending else None
    if record is None:
        hook("before_call")
        record = call.perform(hook)
    hook("after_response")
    begin_write(conn)
    try:
        previous = recorded(conn, key)
        if previous is not None:  # confirmed by another attempt meanwhile
            conn.rollback()
            return LedgerOutcome(previous, replayed=True)
        output = call.apply(record)
        result = output.model_dump(mode="json")
        external_id = record.get("id")
        conn.execute(
            "INSERT INTO mutation_ledger (key, run_id, step, tool, args, result, committed_at,"
            " tenant_id, customer_id) VALUES (?,?,?,?,?,?,?,?,?)",
            (key, run_id, step, tool, canonical_json(args), canonical_json(result), clock(),
             tenant_id, customer_id))
        conn.execute("UPDATE external_intents SET status = 'confirmed', external_id = ?,"
                     " confirmed_at = ? WHERE key = ?", (str(external_id), clock(), key))
        hook("before_commit")
        conn.commit()
        return LedgerOutcome(result, replayed=False)
    except BaseException:
        conn.rollback()
        raise


def _add_intent_tenant(conn: Connection) -> None:
    """A SQLite intents table from before the tenant column gains it (inside the caller's
    write transaction: a read when it is there)."""
    columns = {row[0] for row in conn.execute(ledger_dialect(conn).columns,
                                              ("external_intents",))}
    if "tenant_id" not in columns:
        conn.execute("ALTER TABLE external_intents ADD COLUMN tenant_id TEXT")
