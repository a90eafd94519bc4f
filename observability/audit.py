"""Tamper-evident audit log: an append-only, SHA-256 hash-chained table (audit.db on SQLite,
the audit schema on PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from checkpoints.backend import Schema, SqliteBackend, register_schema
from observability.chain import (
    GENESIS_HASH,
    Anchor,
    AuditVerification,
    Head,
    Row,
    entry_hash,
    text_entry_hash,
    verify_chain,
)
from observability.db import (
    AUDIT,
    Store,
    StoreSource,
    backend_of,
    canonical_json,
    open_store,
    store_errors,
)

__all__ = ["GENESIS_HASH", "AuditEntry", "AuditLog", "AuditVerification", "Head", "audit_head",
           "entry_hash", "verify_audit"]

_INSERT = (
    "INSERT INTO audit (seq, prev_hash, entry_hash, kind, run_id, payload, at, dedupe_key)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_V1 = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_id TEXT,
    payload TEXT NOT NULL,
    at REAL NOT NULL,
    dedupe_key TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS audit_anchor (
    through_seq INTEGER PRIMARY KEY,
    through_hash TEXT NOT NULL,
    purged_at REAL NOT NULL
);
"""
_POSTGRES_V1 = """
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_id TEXT,
    payload TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    dedupe_key TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS audit_anchor (
    through_seq BIGINT PRIMARY KEY,
    through_hash TEXT NOT NULL,
    purged_at DOUBLE PRECISION NOT NULL
);
"""
AUDIT_SCHEMA = register_schema(Schema(AUDIT, {"sqlite": [_SQLITE_V1],
                                              "postgres": [_POSTGRES_V1]}))

_WRITE_LOCK = {
    # BEGIN IMMEDIATE already holds SQLite's one write lock.
    "sqlite": None,
    # Appenders in many processes take turns for the length of their transaction, so each
    # reads the head the last one committed; keyed by schema, so logs never wait on another.
    "postgres": "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.audit'))",
}
"""Taken first in every write transaction, before the head is read."""


class AuditEntry(NamedTuple):
    """One entry to append."""

    kind: str
    run_id: str | None
    payload: dict[str, Any]
    dedupe_key: str | None
    """An entry whose dedupe_key was already logged is skipped."""
    at: float | None
    """The event's time; None means the log's clock."""


class AuditLog:
    """Appends entries under a write lock so seq and prev_hash stay consistent."""

    def __init__(self, source: StoreSource, *, clock: Callable[[], float],
                 create: bool = True) -> None:
        self._owned = ExitStack()
        backend = self._owned.enter_context(backend_of(source))
        try:
            self._store: Store = open_store(backend, AUDIT, create=create)
        except BaseException:
            self._owned.close()
            raise
        self._conn: Any = self._store.conn
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """The file or database holding the log, for messages."""
        return self._store.where

    def append(
        self,
        kind: str,
        run_id: str | None,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        at: float | None = None,
    ) -> int | None:
        """Append one entry and return its seq; None if `dedupe_key` was already logged.

        `at` defaults to the clock; the recorder passes its event's time so both agree.
        """
        return self.append_many([AuditEntry(kind, run_id, payload, dedupe_key, at)])[0]

    def append_many(self, entries: list[AuditEntry]) -> list[int | None]:
        """Append entries in order, in one transaction; each one's seq, or None if skipped."""
        if not entries:
            return []
        with self._lock, self._write():
            return self._append(entries)

    @contextmanager
    def _write(self) -> Iterator[Any]:
        # The write lock is held before the head is read, so two writers (two processes)
        # cannot both link to the same prev_hash.
        with self._store.write() as conn:
            lock = _WRITE_LOCK[self._store.dialect]
            if lock is not None:
                conn.execute(lock)
            yield conn

    def _append(self, entries: list[AuditEntry]) -> list[int | None]:
        """Chain and insert entries inside the caller's write transaction, skipping any whose
        dedupe_key is already logged (or repeated in `entries`)."""
        keys = [e.dedupe_key for e in entries if e.dedupe_key is not None]
        logged: set[str] = set()
        for start in range(0, len(keys), 500):  # under SQLite's bound-parameter limit
            chunk = keys[start:start + 500]
            logged.update(r[0] for r in self._conn.execute(
                "SELECT dedupe_key FROM audit WHERE dedupe_key IN"
                f" ({', '.join('?' * len(chunk))})", chunk))
        seq, prev = self._head()
        rows: list[tuple[Any, ...]] = []
        seqs: list[int | None] = []
        for kind, run_id, payload, dedupe_key, at in entries:
            if dedupe_key is not None:
                if dedupe_key in logged:
                    seqs.append(None)
                    continue
                logged.add(dedupe_key)
            seq, at = seq + 1, self._clock() if at is None else at
            payload_json = canonical_json(payload)
            digest = text_entry_hash(seq, prev, kind, run_id, payload_json, at)
            rows.append((seq, prev, digest, kind, run_id, payload_json, at, dedupe_key))
            seqs.append(seq)
            prev = digest
        for row in rows:
            self._conn.execute(_INSERT, row)
        return seqs

    def _head(self) -> tuple[int, str]:
        row = self._conn.execute(
            "SELECT seq, entry_hash FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row:
            return int(row[0]), str(row[1])
        anchor = self.anchor()
        return (anchor.through_seq, anchor.through_hash) if anchor else (0, GENESIS_HASH)

    def head(self) -> tuple[int, str]:
        """(seq, entry_hash) of the newest entry; publish it elsewhere to pin the chain."""
        with self._lock:
            return self._head()

    def anchor(self) -> Anchor | None:
        row = self._conn.execute(
            "SELECT through_seq, through_hash FROM audit_anchor ORDER BY through_seq DESC LIMIT 1"
        ).fetchone()
        return Anchor(int(row[0]), str(row[1])) if row else None

    def purge_before(self, cutoff: float) -> int:
        """Delete the oldest entries logged before `cutoff`, keep an anchor, return the count.

        Only a prefix of the chain is removed, so what remains still links to the anchor.
        The purge is logged in the same transaction; verify() checks the anchor against it.
        """
        with self._lock, self._write() as conn:
            first_kept = conn.execute(
                "SELECT min(seq) FROM audit WHERE at >= ?", (cutoff,)
            ).fetchone()[0]
            row = conn.execute(
                "SELECT seq, entry_hash FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT 1",
                (first_kept if first_kept is not None else 2**62,),
            ).fetchone()
            if row is None:
                return 0
            deleted = int(conn.execute("DELETE FROM audit WHERE seq <= ?", (row[0],)).rowcount)
            conn.execute(
                "INSERT INTO audit_anchor (through_seq, through_hash, purged_at) VALUES (?,?,?)",
                (row[0], row[1], self._clock()),
            )
            self._append([AuditEntry(
                "purge", None,
                {"through_seq": row[0], "through_hash": row[1], "deleted": deleted},
                None, None)])
            return deleted

    def verify(self, head: Head | None = None) -> AuditVerification:
        """Walk the chain; with `head`, also check the log still holds that entry unchanged.

        The chain alone cannot show a log rewritten from some entry on, with every hash
        recomputed, or its newest entries dropped; a head written down elsewhere can. Raises
        ValueError when `head` names an entry a purge removed (it can no longer be checked).
        """
        with self._lock:
            anchor = self.anchor()
            if head is not None and anchor is not None and head.seq < anchor.through_seq:
                raise ValueError(f"entry {head.seq} was purged (the log keeps the entries after "
                                 f"{anchor.through_seq}); check against a newer head")
            rows = self._conn.execute(
                "SELECT seq, prev_hash, entry_hash, kind, run_id, payload, at"
                " FROM audit ORDER BY seq"
            )
            result = verify_chain((Row(*row) for row in rows), anchor)
            if not result.ok or head is None:
                return result
            return self._against(head, anchor, result)

    def _against(self, head: Head, anchor: Anchor | None,
                 result: AuditVerification) -> AuditVerification:
        if head.seq == 0 and anchor is None:
            stored: str | None = GENESIS_HASH
        elif anchor is not None and head.seq == anchor.through_seq:
            stored = anchor.through_hash
        else:
            row = self._conn.execute("SELECT entry_hash FROM audit WHERE seq = ?",
                                     (head.seq,)).fetchone()
            stored = row[0] if row else None
        if stored is None:
            newest = self._head()[0]
            return AuditVerification(False, result.entries_checked, head.seq,
                                     f"the pinned entry is missing: the log ends at {newest} "
                                     "(its newest entries were dropped, or the head is from "
                                     "another log)")
        if stored != head.entry_hash:
            return AuditVerification(False, result.entries_checked, head.seq,
                                     "the entry's hash differs from the pinned head: the log "
                                     "was rewritten at or before this entry (or the head is "
                                     "from another log)")
        return result

    def close(self) -> None:
        with self._lock:
            try:
                self._store.close()
            finally:
                self._owned.close()


@contextmanager
def _existing_log(source: StoreSource) -> Iterator[AuditLog]:
    """The audit log of `source`, opened for one read; a missing SQLite file or an unreadable
    database raises StoreError."""
    log = AuditLog(source, clock=time.time, create=False)
    try:
        with store_errors(f"cannot read {log.where}"):
            yield log
    finally:
        log.close()


def missing_audit_file(source: StoreSource) -> Path | None:
    """The SQLite file that should hold the log, when it is not there (deleted); None when
    it is, or on PostgreSQL (whose schema `signoff db upgrade` made)."""
    with backend_of(source) as backend:
        if isinstance(backend, SqliteBackend) and not backend.path(AUDIT).is_file():
            return backend.path(AUDIT)
    return None


def verify_audit(source: StoreSource, head: Head | None = None) -> AuditVerification:
    """Verify the audit log of `source` (a Home, a Backend or a SQLite directory), against
    `head` if given; a missing or unreadable log raises StoreError, a head that can no
    longer be checked ValueError."""
    with _existing_log(source) as log:
        return log.verify(head)


def audit_head(source: StoreSource) -> Head:
    """The newest entry of `source`'s audit log, to write down where its writers cannot."""
    with _existing_log(source) as log:
        return Head(*log.head())
