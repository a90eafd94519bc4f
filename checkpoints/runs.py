"""The run registry: one row per run, its status, its lease, and the kill switches.

LangGraph's checkpointer knows a thread's state but not who may drive it: two invocations on
one thread both "succeed" and one's writes vanish. So every process that drives a run first
takes the run's lease here. A lease whose holder died expires after its TTL; sooner when the
holder ran on this host, because the owner id names its host and pid and a dead pid is seen.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checkpoints.control_schema import STORE, add_legacy_columns
from graph.errors import DamagedData, RunBusy, RunNotFound
from graph.identity import normalize_identity

if TYPE_CHECKING:
    from checkpoints.backend import Backend
    from checkpoints.sql import Connection

TERMINAL = frozenset({"resolved", "escalated", "blocked", "rejected", "failed", "refused"})
ALL_WORKFLOWS = "*"


@dataclass(frozen=True)
class RunRecord:
    """A row of the run registry."""

    run_id: str
    workflow: str
    workflow_version: str
    tenant_id: str
    ticket_id: str | None
    customer_id: str | None
    requester: str
    requester_role: str | None
    """The requester's role when the run started; approvals may have to come from another."""
    status: str
    """running, waiting_approval, or a terminal outcome."""
    reason: str | None
    pending: dict[str, Any] | None
    """What a waiting run asks a human to decide."""
    policy_version: str | None
    inputs: dict[str, Any] | None
    """The ticket the run started from, so a run that crashed before its first checkpoint
    can start again."""
    created_at: float
    updated_at: float
    lease_owner: str | None
    lease_expires: float | None
    models: dict[str, Any] | None = None
    """The model settings (per role, without secrets) the run started with; None for a run
    registered before they were recorded."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def new_lease_owner() -> str:
    """An owner id for this process: `host:pid:nonce`, so a dead holder can be recognised."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(owner: str) -> bool:
    """True only when `owner` names a process on this host that no longer exists.

    Unknown formats, other hosts and live (or unsignallable) pids count as alive, so the lease
    is then left to expire. A killed child that is not yet reaped (a zombie) also counts as
    alive until its parent waits for it.
    """
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists under another user
        return False
    return False


class RunStore:
    """Run rows, leases, kill switches, the event outbox and the audit head, in the control
    store (control.db, or the `<prefix>control` schema on Postgres); owns `conn`."""

    def __init__(self, conn: Connection, *, clock: Callable[[], float] = time.time) -> None:
        self.conn = conn
        self.clock = clock
        if isinstance(conn, sqlite3.Connection):
            try:
                add_legacy_columns(conn)
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise DamagedData(f"the run registry is not usable: {exc}") from None

    @classmethod
    def open(cls, backend: Backend, *, clock: Callable[[], float] = time.time) -> RunStore:
        """The run registry on `backend`'s control store."""
        return cls(backend.connect(STORE), clock=clock)

    def close(self) -> None:
        self.conn.close()

    def create(self, *, run_id: str, workflow: str, workflow_version: str, tenant_id: str,
               ticket_id: str | None, customer_id: str | None, requester: str,
               policy_version: str | None, inputs: dict[str, Any], lease_owner: str,
               lease_ttl: float, requester_role: str | None = None,
               models: dict[str, Any] | None = None) -> None:
        now = self.clock()
        self.conn.execute(
            "INSERT INTO runs (run_id, workflow, workflow_version, tenant_id, ticket_id,"
            " customer_id, requester, requester_role, status, policy_version, inputs,"
            " created_at, updated_at, lease_owner, lease_expires, models)"
            " VALUES (?,?,?,?,?,?,?,?,'running',?,?,?,?,?,?,?)",
            (run_id, workflow, workflow_version, tenant_id, ticket_id, customer_id, requester,
             requester_role, policy_version, json.dumps(inputs), now, now, lease_owner,
             now + lease_ttl, json.dumps(models) if models is not None else None),
        )

    def get(self, run_id: str) -> RunRecord:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r} (see `signoff runs`)")
        data = dict(row)
        for column in ("pending", "inputs", "models"):
            data[column] = json.loads(data[column]) if data[column] else None
        return RunRecord(**data)

    def list(self, *, status: str | None = None, limit: int = 50,
             tenants: Sequence[str] | None = None, ticket_id: str | None = None,
             workflow: str | None = None) -> list[RunRecord]:
        """Runs newest first, filtered by status, tenant (any of `tenants`; "*" is every
        tenant), ticket and workflow."""
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        for column, value in (("status", status), ("ticket_id", ticket_id),
                              ("workflow", workflow)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if tenants is not None and "*" not in tenants:
            where.append(f"tenant_id IN ({', '.join('?' * len(tenants))})" if tenants
                         else "1 = 0")
            params.extend(tenants)
        sql = "SELECT run_id FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, run_id LIMIT ?"
        ids = [r[0] for r in self.conn.execute(sql, (*params, limit))]
        return [self.get(run_id) for run_id in ids]

    def set_status(self, run_id: str, status: str, *, reason: str | None = None,
                   pending: dict[str, Any] | None = None, release: str | None = None) -> None:
        """Set the run's status; with `release=owner`, also give up that owner's lease in the
        same committed write."""
        self.conn.execute(
            "UPDATE runs SET status = ?, reason = ?, pending = ?, updated_at = ?,"
            " lease_owner = CASE WHEN lease_owner = ? THEN NULL ELSE lease_owner END,"
            " lease_expires = CASE WHEN lease_owner = ? THEN NULL ELSE lease_expires END"
            " WHERE run_id = ?",
            (status, reason, json.dumps(pending) if pending else None, self.clock(), release,
             release, run_id),
        )

    def set_models(self, run_id: str, models: dict[str, Any]) -> None:
        """Record the model settings a run goes on under (`resume --with-current-settings`)."""
        self.conn.execute("UPDATE runs SET models = ?, updated_at = ? WHERE run_id = ?",
                          (json.dumps(models), self.clock(), run_id))

    def acquire_lease(self, run_id: str, owner: str, ttl: float) -> None:
        """Take the run's lease or raise RunBusy; an expired lease, or one whose holder process
        on this host is dead, is taken over."""
        now = self.clock()
        cur = self.conn.execute(
            "UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE run_id = ? AND"
            " (lease_owner IS NULL OR lease_expires < ? OR lease_owner = ?)",
            (owner, now + ttl, run_id, now, owner),
        )
        if cur.rowcount == 1:
            return
        record = self.get(run_id)  # raises RunNotFound for an unknown id
        holder = record.lease_owner or ""
        if holder and holder_is_dead(holder):
            # Conditional on the dead holder, so of two processes taking over only one wins.
            cur = self.conn.execute(
                "UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE run_id = ? AND"
                " lease_owner = ?", (owner, now + ttl, run_id, holder))
            if cur.rowcount == 1:
                return
            record = self.get(run_id)
        left = max(0.0, (record.lease_expires or now) - now)
        raise RunBusy(f"run {run_id} is busy: another process ({record.lease_owner}) holds it "
                      f"(lease expires in {left:.0f}s)")

    def renew_lease(self, run_id: str, owner: str, ttl: float) -> None:
        self.conn.execute("UPDATE runs SET lease_expires = ? WHERE run_id = ? AND lease_owner = ?",
                          (self.clock() + ttl, run_id, owner))

    def release_lease(self, run_id: str, owner: str) -> None:
        self.conn.execute(
            "UPDATE runs SET lease_owner = NULL, lease_expires = NULL"
            " WHERE run_id = ? AND lease_owner = ?", (run_id, owner))

    # The event outbox ---------------------------------------------------------------------

    def park_events(self, run_id: str, events: builtins.list[Any], error: str) -> None:
        """Keep a drive's trace and audit events that could not be written, to write later."""
        self.conn.execute(
            "INSERT INTO event_outbox (run_id, events, error, parked_at) VALUES (?,?,?,?)",
            # default=str: a value JSON cannot hold is kept as text rather than lost with the rest
            (run_id, json.dumps(events, default=str), error, self.clock()))

    def parked_events(self, run_id: str | None = None) -> builtins.list[
            tuple[int, str, builtins.list[Any]]]:
        """(batch, run id, events) of every parked batch (of one run), oldest first."""
        sql = "SELECT batch, run_id, events FROM event_outbox"
        rows = self.conn.execute(sql + " WHERE run_id = ? ORDER BY batch", (run_id,)) \
            if run_id is not None else self.conn.execute(sql + " ORDER BY batch")
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def unpark_events(self, batch: int) -> None:
        """Drop a parked batch once its events are written."""
        self.conn.execute("DELETE FROM event_outbox WHERE batch = ?", (batch,))

    # The audit log's head, as its writers last saw it ------------------------------------

    def note_audit_head(self, seq: int, entry_hash: str) -> None:
        """Keep the audit log's head after a write; an older head never replaces a newer one
        (seq counts every entry ever appended, so it is also the log's length)."""
        self.conn.execute(
            "INSERT INTO audit_written (id, seq, entry_hash, written_at) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq,"
            " entry_hash = excluded.entry_hash, written_at = excluded.written_at"
            " WHERE excluded.seq >= audit_written.seq", (seq, entry_hash, self.clock()))

    # Kill switches ------------------------------------------------------------------------

    def set_kill(self, scope: str, *, by: str, reason: str) -> None:
        """Set (or replace) the kill switch for `scope`; `by` is stored normalised."""
        self.conn.execute(
            "INSERT INTO kill_switches (scope, set_by, reason, set_at) VALUES (?,?,?,?)"
            " ON CONFLICT (scope) DO UPDATE SET set_by = excluded.set_by,"
            " reason = excluded.reason, set_at = excluded.set_at",
            (scope, normalize_identity(by), reason, self.clock()))

    def clear_kill(self, scope: str) -> bool:
        return self.conn.execute("DELETE FROM kill_switches WHERE scope = ?", (scope,)).rowcount > 0

    def kill_switches(self) -> builtins.list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM kill_switches ORDER BY scope")]

    def kill_reason(self, workflow: str) -> str | None:
        """Why runs of `workflow` must stop now, or None when no kill switch covers it."""
        row = self.conn.execute(
            "SELECT scope, set_by, reason FROM kill_switches WHERE scope IN (?, ?)"
            " ORDER BY scope = ? DESC LIMIT 1", (workflow, ALL_WORKFLOWS, ALL_WORKFLOWS)).fetchone()
        if row is None:
            return None
        what = "all workflows" if row["scope"] == ALL_WORKFLOWS else f"workflow {row['scope']}"
        return f"kill switch for {what} set by {row['set_by']}: {row['reason']}"


def audit_head_written(backend: Backend) -> tuple[int, str] | None:
    """The audit head the run registry last kept, read without writing (so a read-only copy
    of a data directory can be verified); None when it kept none."""
    conn = backend.open_existing(STORE)
    if conn is None:
        return None
    try:
        row = conn.execute("SELECT seq, entry_hash FROM audit_written").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None  # a registry from before heads were kept
        raise DamagedData(f"the run registry in {backend.describe()} is not usable: {exc}"
                          ) from None
    except sqlite3.DatabaseError as exc:
        raise DamagedData(f"the run registry in {backend.describe()} is not usable: {exc}"
                          ) from None
    finally:
        conn.close()
    return (int(row[0]), str(row[1])) if row else None
