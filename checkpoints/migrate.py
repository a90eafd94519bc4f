"""`signoff migrate --to postgresql://...`: copy a SQLite data directory to PostgreSQL.

`migrate_home` copies every store of a SQLite home (SIGNOFF_HOME) into an empty PostgreSQL
target whose schemas it upgrades first: the control store (runs, leases, kill switches, the
outbox, the audit head, users and tokens), the traces, the audit log (rows as they are, so its
chain verifies there with the same head), each installed workflow's domain data with its ledger
(checkpoints.domain.install_tables) and the checkpoints. Every store is copied in ONE
PostgreSQL transaction on one connection: a failure anywhere leaves the target as the upgrade
left it. What is not rolled back: the upgrade itself (empty schemas at the current version, the
worker role and its grants) and sequences (a rolled-back copy leaves them advanced).

Checkpoints go saver to saver through LangGraph's own interface (every checkpoint of every
thread, oldest first, with its parent link, its metadata and its pending writes), so a run
waiting for an approval under SQLite resumes under PostgreSQL at the same checkpoint.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from checkpoints.backend import (
    PostgresBackend,
    SqliteBackend,
    compact_postgres_saver,
    load_schemas,
)
from checkpoints.copy import copy_sqlite_tables, table_names
from graph.errors import DamagedData, SignoffError


@dataclass(frozen=True)
class CheckpointCopy:
    """What `copy_checkpoints` copied."""

    threads: int
    checkpoints: int
    writes: int


def copy_checkpoints(source: BaseCheckpointSaver[Any], target: BaseCheckpointSaver[Any]
                     ) -> CheckpointCopy:
    """Copy every checkpoint and pending write in `source` into `target`; threads already in
    `target` are skipped (a second copy is a no-op, never a fork)."""
    by_thread: dict[tuple[str, str], list[CheckpointTuple]] = defaultdict(list)
    for tup in source.list(None):
        conf = tup.config["configurable"]
        by_thread[(conf["thread_id"], conf.get("checkpoint_ns", ""))].append(tup)
    threads = checkpoints = writes = 0
    for (thread_id, ns), tuples in sorted(by_thread.items()):
        if target.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}):
            continue
        threads += 1
        # Checkpoint ids are time-ordered (uuid6): oldest first, so each parent exists first.
        for tup in sorted(tuples, key=lambda t: t.config["configurable"]["checkpoint_id"]):
            parent = tup.parent_config or {
                "configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
            checkpoint = tup.checkpoint
            saved = target.put(parent, checkpoint, tup.metadata,
                               dict(checkpoint.get("channel_versions", {})))
            checkpoints += 1
            grouped: dict[str, list[tuple[str, Any]]] = defaultdict(list)
            for task_id, channel, value in tup.pending_writes or ():
                grouped[task_id].append((channel, value))
            for task_id, task_writes in grouped.items():
                target.put_writes(saved, task_writes, task_id)
                writes += len(task_writes)
    return CheckpointCopy(threads=threads, checkpoints=checkpoints, writes=writes)


CONTROL, TRACES, AUDIT, CHECKPOINTS = "control", "traces", "audit", "checkpoints"


class TargetNotEmpty(SignoffError):
    """The target already holds runs, audit entries, checkpoints or mutations: migrate copies
    into an empty target only, and refuses before it changes anything."""


@dataclass(frozen=True)
class StoreCopy:
    """What was copied into one store."""

    store: str
    rows: dict[str, int]
    """Rows per table."""


@dataclass(frozen=True)
class Migration:
    """What `migrate_home` copied and what it checked on the target afterwards."""

    stores: tuple[StoreCopy, ...]
    checkpoints: CheckpointCopy
    not_copied: tuple[str, ...]
    """Files in the home no store or installed workflow names (left where they are)."""
    runs: tuple[int, int]
    """Runs in the source and in the target."""
    audit_entries: int
    """Entries the target's audit chain verified."""
    audit_head: str
    """The target's audit head (SEQ:HASH), the source's own."""


def _domain_files(root: Path, workflows: Iterable[Any]) -> dict[str, Path]:
    """Each installed workflow's domain store and its file in `root` (workflows sharing a
    file share a store)."""
    from graph.runner import domain_store

    found: dict[str, Path] = {}
    for workflow in workflows:
        path = root / workflow.db_filename
        if path.is_file():
            found.setdefault(domain_store(workflow), path)
    return found


def _read_only(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DamagedData(f"{path} is not a usable SQLite database: {exc}") from None
    return conn


def _scalar(raw: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = raw.execute(sql, params).fetchone()
    return None if row is None else (row[0] if isinstance(row, tuple)
                                     else next(iter(row.values())))


def _count(raw: Any, schema: str, table: str) -> int:
    """Rows in schema.table; 0 when it does not exist."""
    name = f'"{schema}"."{table}"'
    if _scalar(raw, "SELECT to_regclass(%s) IS NOT NULL", (name,)) is not True:
        return 0
    return int(_scalar(raw, f"SELECT count(*) FROM {name}"))


def _holdings(raw: Any, target: PostgresBackend, domain_stores: Iterable[str]) -> list[str]:
    """What the target already holds that a migration must not overwrite."""
    held = []
    for count, what in (
            (_count(raw, target.schema(CONTROL), "runs"), "runs"),
            (_count(raw, target.schema(AUDIT), "audit"), "audit entries"),
            (_count(raw, target.schema(CHECKPOINTS), "checkpoints"), "checkpoints"),
            *((_count(raw, target.schema(store), "mutation_ledger"), f"{store} mutations")
              for store in domain_stores)):
        if count:
            held.append(f"{what} {count}")
    return held


def _refuse_if_not_empty(raw: Any, target: PostgresBackend, domain_stores: Iterable[str]
                         ) -> None:
    held = _holdings(raw, target, domain_stores)
    if held:
        raise TargetNotEmpty(
            f"{target.describe()} (schema prefix {target.schema_prefix}) already holds "
            f"{', '.join(held)}: migrate copies into an empty target only; nothing was "
            "changed (pick another SIGNOFF_DB_SCHEMA_PREFIX, or drop those schemas)")


def _target_tables(raw: Any, schema: str) -> set[str]:
    return {r[0] if isinstance(r, tuple) else r["table_name"] for r in raw.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        (schema,)).fetchall()}


@contextmanager
def _in_schema(raw: Any, schema: str) -> Iterator[Any]:
    raw.execute(f'SET search_path TO "{schema}"')
    try:
        yield raw
    finally:
        raw.execute("RESET search_path")


def _refuse_if_driven(source: SqliteBackend) -> None:
    """Refuse while a process drives a run of the home: what it writes after the copy began
    would be lost. A lease that lapsed (a process that died) does not stop a migration."""
    import time

    with closing(_read_only(source.path(CONTROL))) as conn:
        row = conn.execute("SELECT run_id, lease_owner, lease_expires FROM runs WHERE"
                           " lease_owner IS NOT NULL AND lease_expires > ? ORDER BY run_id",
                           (time.time(),)).fetchone()
    if row is not None:
        raise SignoffError(f"run {row[0]} is being driven by {row[1]} (lease for "
                           f"{row[2] - time.time():.0f}s more): stop every process using "
                           f"{source.root} first, then migrate")


def migrate_home(root: Path, target: PostgresBackend, workflows: Iterable[Any]) -> Migration:
    """Copy the SQLite home `root` into the empty PostgreSQL `target` (see the module's
    docstring), then verify the target: its audit chain, its head against the source's, its
    run count against the source's. Raises TargetNotEmpty before changing anything when the
    target holds data, SignoffError when `root` holds no signoff data, DamagedData when the
    copy does not verify."""
    from checkpoints.domain import install_tables
    from checkpoints.saver import open_checkpointer

    source = SqliteBackend(root)
    if not source.path(CONTROL).is_file():
        raise SignoffError(f"{root} holds no signoff data (no {CONTROL}.db): nothing to "
                           "migrate (SIGNOFF_HOME names the data directory)")
    _refuse_if_driven(source)
    domains = _domain_files(root, workflows)
    known = {source.path(s) for s in (*load_schemas(), CHECKPOINTS)} | set(domains.values())
    not_copied = tuple(sorted(p.name for p in root.glob("*.db") if p not in known))
    with target.pool.connection() as raw:
        _refuse_if_not_empty(raw, target, domains)  # before the upgrade: a refusal changes nothing
    target.upgrade()
    copies: list[StoreCopy] = []
    with target.pool.connection() as raw:
        with raw.transaction():
            # Two migrations into one target: the second waits, then finds it not empty.
            raw.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                        (f"signoff_migrate:{target.schema_prefix}",))
            _refuse_if_not_empty(raw, target, domains)
            for store in sorted(load_schemas()):
                if not source.path(store).is_file():
                    continue
                schema = target.schema(store)
                with closing(_read_only(source.path(store))) as conn, _in_schema(raw, schema):
                    tables = sorted((set(table_names(conn)) & _target_tables(raw, schema))
                                    - {"signoff_schema"})
                    copies.append(StoreCopy(store, copy_sqlite_tables(conn, raw, tables,
                                                                      create=False)))
            for store, path in sorted(domains.items()):
                with closing(_read_only(path)) as conn:
                    try:
                        rows = install_tables(raw, target.schema(store), store, conn)
                    finally:
                        raw.execute("RESET search_path")
                copies.append(StoreCopy(store, rows))
            checkpoints = CheckpointCopy(0, 0, 0)
            if source.path(CHECKPOINTS).is_file():
                with open_checkpointer(source.path(CHECKPOINTS)) as sqlite_saver, \
                        _in_schema(raw, target.schema(CHECKPOINTS)):
                    checkpoints = copy_checkpoints(sqlite_saver, compact_postgres_saver()(raw))
    return _verified(source, target, tuple(copies), checkpoints, not_copied)


def _verified(source: SqliteBackend, target: PostgresBackend, copies: tuple[StoreCopy, ...],
              checkpoints: CheckpointCopy, not_copied: tuple[str, ...]) -> Migration:
    """The migration, once the target's audit chain verifies against the source's head and
    it holds as many runs; DamagedData (one line) otherwise."""
    from checkpoints.runs import RunStore
    from observability.audit import audit_head, verify_audit

    runs = []
    for backend in (source, target):
        with closing(RunStore.open(backend)) as store:
            runs.append(int(store.conn.execute("SELECT count(*) FROM runs").fetchone()[0]))
    copied_audit = any(c.store == AUDIT for c in copies)
    head = audit_head(source) if copied_audit else None
    verification = verify_audit(target, head) if copied_audit else None
    if verification is not None and not verification.ok:
        raise DamagedData(f"copied, but the audit chain on {target.describe()} does not "
                          f"verify at entry {verification.first_bad_seq}: "
                          f"{verification.reason}")
    if runs[0] != runs[1]:
        raise DamagedData(f"copied, but {target.describe()} holds {runs[1]} run(s) where "
                          f"{source.root} holds {runs[0]}")
    return Migration(stores=copies, checkpoints=checkpoints, not_copied=not_copied,
                     runs=(runs[0], runs[1]),
                     audit_entries=verification.entries_checked if verification else 0,
                     audit_head=str(head) if head else "0:" + "0" * 64)
