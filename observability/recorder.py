"""The Recorder: the graph's one entry point for traces, costs and the audit log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from observability.audit import AuditEntry, AuditLog
from observability.db import (
    TRACES,
    StoreSource,
    backend_of,
    canonical_json,
    open_store,
    store_errors,
)
from observability.prices import PriceTable
from observability.redact import Redactor

DECISION_KINDS = frozenset(
    {"gate", "verify_rules", "verify_model", "verify_commit", "approval", "postcheck",
     "fallback", "kill", "completion"}
)
OUTCOMES = frozenset({"resolved", "escalated", "blocked", "rejected", "failed", "refused"})
WARNING_VERDICTS = frozenset({"yellow", "red", "blocked", "fail", "reject"})
# A fallback or kill is itself a warning sign when nothing warned before it.
_STOP_KINDS = frozenset({"fallback", "kill"})


Event = list[Any]
"""One recorded event, as plain data so it can travel in a checkpoint: [table, *row] with
the row's values in _COLUMNS order, or [FINISH, run_id, outcome, reason, at]. What it
implies for the audit log and the run row is derived when it is written, not stored."""

_COLUMNS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id", "workflow", "workflow_version", "policy_version", "tenant_id", "team",
             "requester", "customer_id", "ticket_id", "inputs", "started_at"),
    "model_calls": ("run_id", "event_key", "at", "node", "model", "tokens_in", "tokens_out",
                    "latency_s", "cost_usd"),
    "tool_calls": ("run_id", "event_key", "at", "step", "tool", "args", "result", "error",
                   "schema_valid", "ok", "latency_s", "mutation"),
    "decisions": ("run_id", "event_key", "at", "step", "kind", "verdict", "rule_id", "reason",
                  "actor", "data"),
    "evidence": ("run_id", "event_key", "at", "source", "ref"),
}
# ON CONFLICT DO NOTHING: both databases skip a repeated (run_id, event_key).
_INSERT = {table: f"INSERT INTO {table} ({', '.join(columns)})"
                  f" VALUES ({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING"
           for table, columns in _COLUMNS.items()}
FINISH = "finish"
_START_KEYS = ("workflow", "workflow_version", "policy_version", "tenant_id", "team",
               "requester", "customer_id", "ticket_id")
_DECISION_KEYS = ("event_key", "step", "verdict", "rule_id", "reason", "actor", "data")


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Recorder:
    """Writes events redacted, at most once per event_key, in short transactions.

    LangGraph re-runs nodes on resume and replay, so every method may be called again with
    the same key; the repeat is ignored. Outside `capture()` each event is written at once;
    inside, the block's events are held for `write()`, which writes them together, one
    transaction per store. Thread-safe: one connection per store, one lock; a capture
    belongs to the thread that opened it.
    """

    def __init__(
        self,
        source: StoreSource,
        *,
        prices: PriceTable | None = None,
        pii_fields: frozenset[str] = frozenset(),
        redact: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prices = prices or PriceTable.default()
        self._redactor = Redactor(pii_fields, enabled=redact)
        self._clock = clock
        self._lock = threading.Lock()
        # `source` a Home: one backend for both stores, closed with the recorder.
        self._owned = ExitStack()
        try:
            backend = self._owned.enter_context(backend_of(source))
            self._traces = open_store(backend, TRACES, create=True)
            self._owned.callback(self._traces.close)
            self._audit = AuditLog(backend, clock=clock)
        except BaseException:
            self._owned.close()
            raise
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

    def write(self, events: Sequence[Event]) -> None:
        """Write held events: one transaction for the traces, one for the audit log.

        Every event is idempotent, so writing the same events twice changes nothing. An
        event that is not one this recorder makes raises ValueError and nothing is written.
        """
        statements: list[tuple[str, tuple[Any, ...]]] = []
        entries: list[AuditEntry] = []
        for event in events:
            self._expand(event, statements, entries)
        if statements:
            failed = store_errors()
            with self._lock, failed, self._traces.write() as conn:
                for sql, params in statements:
                    conn.execute(sql, params)
        with store_errors():
            self._audit.append_many(entries)

    @staticmethod
    def _expand(event: Event, statements: list[tuple[str, tuple[Any, ...]]],
                entries: list[AuditEntry]) -> None:
        """The trace statements and audit entries one event stands for."""
        kind, values = (event[0], tuple(event[1:])) if event else (None, ())
        if kind == FINISH and len(values) == 4:
            run_id, outcome, reason, at = values
            statements.append(("UPDATE runs SET outcome = ?, reason = ?, finished_at = ?"
                               " WHERE run_id = ? AND finished_at IS NULL",
                               (outcome, reason, at, run_id)))
            entries.append(AuditEntry("run_finished", run_id,
                                      {"outcome": outcome, "reason": reason},
                                      f"{run_id}\x1ffinish", at))
            return
        if kind not in _COLUMNS or len(values) != len(_COLUMNS[kind]):
            raise ValueError(f"not a recorder event: {str(event)[:80]}")
        statements.append((_INSERT[kind], values))
        row = dict(zip(_COLUMNS[kind], values, strict=True))
        run_id = row["run_id"]
        if kind == "runs":
            entries.append(AuditEntry("run_started", run_id, {k: row[k] for k in _START_KEYS},
                                      f"{run_id}\x1fstart", row["started_at"]))
        elif kind == "tool_calls" and row["mutation"]:
            entries.append(AuditEntry(
                "mutation", run_id,
                {"event_key": row["event_key"], "step": row["step"], "tool": row["tool"],
                 "args": _loads(row["args"]), "result": _loads(row["result"]),
                 "error": row["error"], "ok": bool(row["ok"])},
                f"{run_id}\x1fevent\x1f{row['event_key']}", row["at"]))
        elif kind == "decisions":
            # Both set a time only once, so a repeated decision changes nothing.
            stop = row["kind"] in _STOP_KINDS
            for column, applies in (("first_warning_at", stop or
                                     row["verdict"] in WARNING_VERDICTS),
                                    ("fallback_at", stop)):
                if applies:
                    statements.append((f"UPDATE runs SET {column} = ? WHERE run_id = ?"
                                       f" AND {column} IS NULL", (row["at"], run_id)))
            entries.append(AuditEntry(row["kind"], run_id,
                                      {k: row[k] for k in _DECISION_KEYS},
                                      f"{run_id}\x1fevent\x1f{row['event_key']}", row["at"]))

    def _emit(self, event: Event) -> None:
        """Write one event now, or hold it when this thread is inside capture()."""
        held: list[Event] | None = getattr(self._local, "held", None)
        if held is None:
            self.write([event])
        else:
            held.append(event)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        """Record one row (INSERT OR IGNORE: a repeated event_key changes nothing)."""
        self._emit([table, *(row[column] for column in _COLUMNS[table])])

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
        self._insert("tool_calls", row)  # a mutation is also an audit entry (see _expand)

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
        self._insert("decisions", row)  # also an audit entry (see _expand)

    def finish_run(self, run_id: str, *, outcome: str, reason: str | None) -> None:
        """Record the final outcome; the first call wins, later ones are ignored."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
        reason_text = self._text(reason)
        at = self._clock()
        self._emit([FINISH, run_id, outcome, reason_text, at])

    def audit_head(self) -> tuple[int, str]:
        """(seq, entry_hash) of the audit log's newest entry, for its writer to keep."""
        return self._audit.head()

    def close(self) -> None:
        """Close both stores (on SQLite, their WAL checkpointed into the files first)."""
        with self._lock:
            try:
                self._audit.close()
            finally:
                self._owned.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
