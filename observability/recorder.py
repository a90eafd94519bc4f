"""The Recorder: the graph's one entry point for traces, costs and the audit log."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from observability.audit import AuditEntry, AuditLog
from observability.db import TRACES_FILE, canonical_json, checkpoint_and_close, connect
from observability.prices import PriceTable
from observability.redact import Redactor
from observability.schema import ensure_trace_schema

DECISION_KINDS = frozenset(
    {"gate", "verify_rules", "verify_model", "approval", "postcheck", "fallback", "kill"}
)
OUTCOMES = frozenset({"resolved", "escalated", "blocked", "rejected", "failed"})
WARNING_VERDICTS = frozenset({"yellow", "red", "blocked", "fail", "reject"})
# A fallback or kill is itself a warning sign when nothing warned before it.
_STOP_KINDS = frozenset({"fallback", "kill"})


Event = list[Any]
"""One recorded write, as plain data so it can travel in a checkpoint:
["insert", table, row], ["set_once", column, value, run_id],
["finish", outcome, reason, at, run_id] or ["audit", kind, run_id, payload, dedupe_key, at]."""

_TABLES = frozenset({"runs", "model_calls", "tool_calls", "decisions", "evidence"})
_SET_ONCE = frozenset({"first_warning_at", "fallback_at"})
_COLUMN = re.compile(r"^[a-z_]+$")


class Recorder:
    """Writes events redacted, at most once per event_key, in short transactions.

    LangGraph re-runs nodes on resume and replay, so every method may be called again with
    the same key; the repeat is ignored. Outside `capture()`/`batch()` each event is written
    at once; inside, the block's events are held and written together, one transaction per
    store. Thread-safe: one connection per store, one lock; a capture belongs to the thread
    that opened it.
    """

    def __init__(
        self,
        home: Path,
        *,
        prices: PriceTable | None = None,
        pii_fields: frozenset[str] = frozenset(),
        redact: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._home = Path(home)
        self._prices = prices or PriceTable.default()
        self._redactor = Redactor(pii_fields, enabled=redact)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = connect(self._home / TRACES_FILE, create=True)
        ensure_trace_schema(self._conn)
        self._audit = AuditLog(self._home, clock=clock)
        self._local = threading.local()

    # -- writing -------------------------------------------------------------------------

    @contextmanager
    def capture(self) -> Iterator[list[Event]]:
        """Hold the events this thread records in the block instead of writing them.

        The caller writes them later with `write()`: the runner first stores them with the
        node's checkpoint writes (one transaction), then writes them here when the drive ends.
        """
        outer = getattr(self._local, "held", None)
        held: list[Event] = []
        self._local.held = held
        try:
            yield held
        finally:
            self._local.held = outer

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the events recorded in the block and write them when it ends, also when it
        raises (a failing node's events are kept)."""
        with self.capture() as held:
            try:
                yield
            finally:
                self.write(held)

    def write(self, events: Sequence[Event]) -> None:
        """Write held events: one transaction for the traces, one for the audit log.

        Every event is idempotent, so writing the same events twice changes nothing. An
        event that is not one this recorder makes raises ValueError and nothing is written.
        """
        statements: list[tuple[str, tuple[Any, ...]]] = []
        entries: list[AuditEntry] = []
        for event in events:
            statements_or_entry = self._statement(event)
            if isinstance(statements_or_entry, AuditEntry):
                entries.append(statements_or_entry)
            else:
                statements.append(statements_or_entry)
        if statements:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in statements:
                        self._conn.execute(sql, params)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
        self._audit.append_many(entries)

    @staticmethod
    def _statement(event: Event) -> tuple[str, tuple[Any, ...]] | AuditEntry:
        # Events may come back from a checkpoint: table and column names are checked before
        # they are put in SQL.
        kind = event[0] if event else None
        if kind == "insert" and len(event) == 3 and event[1] in _TABLES:
            row = dict(event[2])
            if row and all(_COLUMN.match(column) for column in row):
                columns = ", ".join(row)
                marks = ", ".join("?" for _ in row)
                return (f"INSERT OR IGNORE INTO {event[1]} ({columns}) VALUES ({marks})",
                        tuple(row.values()))
        elif kind == "set_once" and len(event) == 4 and event[1] in _SET_ONCE:
            column = event[1]
            return (f"UPDATE runs SET {column} = ? WHERE run_id = ? AND {column} IS NULL",
                    (event[2], event[3]))
        elif kind == "finish" and len(event) == 5:
            return ("UPDATE runs SET outcome = ?, reason = ?, finished_at = ?"
                    " WHERE run_id = ? AND finished_at IS NULL", tuple(event[1:]))
        elif kind == "audit" and len(event) == 6:
            return AuditEntry(*event[1:])
        raise ValueError(f"not a recorder event: {str(event)[:80]}")

    def _emit(self, event: Event) -> None:
        """Write one event now, or hold it when this thread is inside capture()."""
        held: list[Event] | None = getattr(self._local, "held", None)
        if held is None:
            self.write([event])
        else:
            held.append(event)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        """INSERT OR IGNORE one row: a repeated event_key changes nothing."""
        self._emit(["insert", table, row])

    def _append_audit(self, entry: AuditEntry) -> None:
        self._emit(["audit", *entry])

    def _json(self, value: Any) -> str | None:
        return None if value is None else canonical_json(self._redactor.value(value))

    def _text(self, value: str | None) -> str | None:
        return None if value is None else str(self._redactor.value(value))

    # -- the interface the graph calls ---------------------------------------------------

    def start_run(
        self,
        run_id: str,
        *,
        workflow: str,
        workflow_version: str,
        policy_version: str | None,
        tenant_id: str,
        team: str,
        requester: str,
        customer_id: str | None,
        ticket_id: str | None,
        inputs: dict[str, Any],
    ) -> None:
        """Record a run's identity and (redacted) inputs; a second call is ignored."""
        redact = self._redactor.field
        started_at = self._clock()
        row = {
            "run_id": run_id,
            "workflow": workflow,
            "workflow_version": workflow_version,
            "policy_version": policy_version,
            "tenant_id": tenant_id,
            "team": team,
            # The requester is an operator identity the audit must name, not customer data.
            "requester": requester
            if "requester" not in self._redactor.pii_fields
            else redact("requester", requester),
            "customer_id": redact("customer_id", customer_id),
            "ticket_id": redact("ticket_id", ticket_id),
            "inputs": self._json(inputs),
            "started_at": started_at,
        }
        self._insert("runs", row)
        # Unconditional: the dedupe key makes a repeat a no-op, and a crash between the two
        # writes heals on the next call.
        keys = ("workflow", "workflow_version", "policy_version", "tenant_id", "team",
                "requester", "customer_id", "ticket_id")
        self._append_audit(AuditEntry("run_started", run_id, {k: row[k] for k in keys},
                                      f"{run_id}\x1fstart", started_at))

    def evidence(self, run_id: str, event_key: str, *, source: str, ref: str) -> None:
        """Record a reference (e.g. "orders:A-1001") to evidence the run relied on."""
        self._insert(
            "evidence",
            {
                "run_id": run_id,
                "event_key": event_key,
                "at": self._clock(),
                "source": source,
                "ref": self._text(ref),
            },
        )

    def model_call(
        self,
        run_id: str,
        event_key: str,
        *,
        node: str,
        model: str,
        tokens_in: int,
        tokens_out: int,
        latency_s: float,
    ) -> None:
        """Record one chat-model call and its cost (NULL for a model with no price)."""
        self._insert(
            "model_calls",
            {
                "run_id": run_id,
                "event_key": event_key,
                "at": self._clock(),
                "node": node,
                "model": model,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "latency_s": latency_s,
                "cost_usd": self._prices.cost(model, tokens_in, tokens_out),
            },
        )

    def tool_call(
        self,
        run_id: str,
        event_key: str,
        *,
        step: str,
        tool: str,
        args: dict[str, Any],
        result: dict[str, Any] | None,
        error: str | None,
        schema_valid: bool,
        ok: bool,
        latency_s: float,
        mutation: bool,
    ) -> None:
        """Record one tool call; a mutation is also appended to the audit log."""
        at = self._clock()
        row = {
            "run_id": run_id,
            "event_key": event_key,
            "at": at,
            "step": step,
            "tool": tool,
            "args": self._json(args),
            "result": self._json(result),
            "error": self._text(error),
            "schema_valid": int(schema_valid),
            "ok": int(ok),
            "latency_s": latency_s,
            "mutation": int(mutation),
        }
        self._insert("tool_calls", row)
        if mutation:  # outside the trace insert's check, so a crash between the two heals
            payload = {
                "event_key": event_key,
                "step": step,
                "tool": tool,
                "args": self._redactor.value(args),
                "result": self._redactor.value(result),
                "error": row["error"],
                "ok": ok,
            }
            self._append_audit(
                AuditEntry("mutation", run_id, payload, f"{run_id}\x1fevent\x1f{event_key}", at)
            )

    def decision(
        self,
        run_id: str,
        event_key: str,
        *,
        step: str,
        kind: str,
        verdict: str,
        rule_id: str | None,
        reason: str | None,
        data: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        """Record a gate/verifier/approval/postcheck/fallback/kill verdict, also in the audit.

        `actor` is the identity behind the decision (the approver); it is kept verbatim.
        """
        if kind not in DECISION_KINDS:
            raise ValueError(
                f"unknown decision kind {kind!r}; expected one of {sorted(DECISION_KINDS)}"
            )
        at = self._clock()
        row = {
            "run_id": run_id,
            "event_key": event_key,
            "at": at,
            "step": step,
            "kind": kind,
            "verdict": verdict,
            "rule_id": rule_id,
            "reason": self._text(reason),
            "actor": actor,
            "data": self._json(data),
        }
        self._insert("decisions", row)
        # Both set a time only once, so a repeated decision changes nothing.
        if verdict in WARNING_VERDICTS or kind in _STOP_KINDS:
            self._emit(["set_once", "first_warning_at", at, run_id])
        if kind in _STOP_KINDS:
            self._emit(["set_once", "fallback_at", at, run_id])
        payload = {
            k: row[k]
            for k in ("event_key", "step", "verdict", "rule_id", "reason", "actor", "data")
        }
        self._append_audit(
            AuditEntry(kind, run_id, payload, f"{run_id}\x1fevent\x1f{event_key}", at)
        )

    def finish_run(self, run_id: str, *, outcome: str, reason: str | None) -> None:
        """Record the final outcome; the first call wins, later ones are ignored."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
        reason_text = self._text(reason)
        at = self._clock()
        self._emit(["finish", outcome, reason_text, at, run_id])
        self._append_audit(
            AuditEntry("run_finished", run_id, {"outcome": outcome, "reason": reason_text},
                       f"{run_id}\x1ffinish", at)
        )

    def close(self) -> None:
        """Checkpoint both databases' WAL into their files and close them."""
        with self._lock:
            checkpoint_and_close(self._conn)
        self._audit.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
