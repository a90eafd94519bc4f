"""Section 5: the trace store at 1,000,000 runs (search p95) and a 1,000,000-entry audit chain.

The synthetic store is bulk-loaded with executemany into the schema the Recorder creates
(observability.schema.ensure_trace_schema), with the FTS triggers dropped during the load and
the FTS indexes rebuilt afterwards, then the triggers restored. The audit chain is hashed with
the real observability.chain.entry_hash. Both are cached under bench/out/ between runs.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import percentile
from observability import search_traces, verify_audit
from observability.audit import AuditLog
from observability.chain import GENESIS_HASH, entry_hash
from observability.db import canonical_json
from observability.schema import FTS_COLUMNS, ensure_trace_schema

TOOLS = ("lookup_customer", "get_order", "list_orders", "create_refund_request",
         "add_ticket_note", "escalate_to_human")
OUTCOMES = ("resolved",) * 6 + ("escalated", "blocked", "blocked", "rejected", "failed")
T0 = 1_767_225_600.0  # 2026-01-01 UTC
YEAR = 365 * 86_400.0
CHUNK = 50_000
SEED = 7


def _vocabulary() -> list[str]:
    rng = random.Random(SEED)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return sorted({"".join(rng.choice(letters) for _ in range(rng.randint(4, 9)))
                   for _ in range(2000)})


WORDS = _vocabulary()


def _run_rows(n: int, customers: int) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
    """Chunks of (runs, tool_calls, decisions, model_calls) rows for runs 0..n-1.

    Texts come from pools of random word sequences, so generating a row costs little more
    than inserting it.
    """
    rng = random.Random(SEED)
    subjects = [" ".join(rng.choices(WORDS, k=4)) for _ in range(4096)]
    bodies = [" ".join(rng.choices(WORDS, k=10)) for _ in range(4096)]
    results = [canonical_json({"status": w}) for w in WORDS]
    rand, pick = rng.random, rng.randrange
    for start in range(0, n, CHUNK):
        runs, tools, decisions, models = [], [], [], []
        for i in range(start, min(n, start + CHUNK)):
            run_id, ticket_id = f"run-{i:010x}", f"TKT-{i:07d}"
            at = T0 + rand() * YEAR
            customer = f"CUS-{pick(customers):06d}"
            outcome = OUTCOMES[pick(len(OUTCOMES))]
            inputs = (f'{{"body":"{bodies[pick(4096)]}","customer_id":"{customer}",'
                      f'"subject":"{subjects[pick(4096)]}","ticket_id":"{ticket_id}"}}')
            runs.append((run_id, "support", "1.0.0", "2026.11.1", "acme", "customer-support",
                         "agent@acme.example", customer, ticket_id, inputs, at,
                         at + 2.5, outcome, f"{outcome}: {WORDS[pick(len(WORDS))]}",
                         None, None))
            tool = TOOLS[pick(len(TOOLS))]
            tools.append((run_id, f"tool:{i}", at + 0.5, "1", tool,
                          f'{{"order_id":"ORD-{pick(1_000_000):06d}"}}',
                          results[pick(len(results))], None, 1, 1, 0.002,
                          int(tool in {"create_refund_request", "add_ticket_note"})))
            decisions.append((run_id, f"gate:1:{i}", at + 0.4, "1", "gate", "green",
                              "read.green", "reads of the ticket's own customer are allowed",
                              None, f'{{"tool":"{tool}"}}'))
            models.append((run_id, f"plan:1:{i}", at + 0.3, "plan", "scripted", 900, 30, 0.01,
                           0.0))
        yield runs, tools, decisions, models


def build_traces(home: Path, n: int, customers: int) -> float:
    """Create home/traces.db with n synthetic runs; returns the seconds it took."""
    started = time.perf_counter()
    path = home / "traces.db"
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    ensure_trace_schema(conn)
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                            ).fetchall()
    for name, _ in triggers:
        conn.execute(f"DROP TRIGGER [{name}]")
    conn.execute("PRAGMA synchronous=OFF")
    inserts = {
        "runs": "INSERT INTO runs (run_id, workflow, workflow_version, policy_version, "
                "tenant_id, team, requester, customer_id, ticket_id, inputs, started_at, "
                "finished_at, outcome, reason, first_warning_at, fallback_at) "
                "VALUES (" + ",".join("?" * 16) + ")",
        "tool_calls": "INSERT INTO tool_calls (run_id, event_key, at, step, tool, args, result,"
                      " error, schema_valid, ok, latency_s, mutation) VALUES ("
                      + ",".join("?" * 12) + ")",
        "decisions": "INSERT INTO decisions (run_id, event_key, at, step, kind, verdict, "
                     "rule_id, reason, actor, data) VALUES (" + ",".join("?" * 10) + ")",
        "model_calls": "INSERT INTO model_calls (run_id, event_key, at, node, model, tokens_in,"
                       " tokens_out, latency_s, cost_usd) VALUES (" + ",".join("?" * 9) + ")",
    }
    for chunk in _run_rows(n, customers):
        conn.execute("BEGIN")
        for sql, rows in zip(inserts.values(), chunk, strict=True):
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    for table in FTS_COLUMNS:
        conn.execute(f"INSERT INTO [{table}_fts]([{table}_fts]) VALUES ('rebuild')")
    for _, sql in triggers:
        conn.execute(sql)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - started


def _audit_hash(seq: int, prev: str, run_id: str, payload_json: str, at: float) -> str:
    """entry_hash for a "gate" entry, from the payload's canonical JSON (checked against the
    real entry_hash on the first entries of every build)."""
    body = (f'{{"at":{at!r},"kind":"gate","payload":{payload_json},"prev_hash":"{prev}",'
            f'"run_id":"{run_id}","seq":{seq}}}')
    return hashlib.sha256(body.encode()).hexdigest()


def build_audit(home: Path, n: int) -> float:
    """Create home/audit.db with an n-entry valid hash chain; returns the seconds it took."""
    started = time.perf_counter()
    path = home / "audit.db"
    path.unlink(missing_ok=True)
    AuditLog(home, clock=time.time).close()  # the real schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    rng = random.Random(SEED)
    prev = GENESIS_HASH
    sql = ("INSERT INTO audit (seq, prev_hash, entry_hash, kind, run_id, payload, at,"
           " dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    for start in range(1, n + 1, CHUNK):
        rows = []
        for seq in range(start, min(n + 1, start + CHUNK)):
            run_id = f"run-{seq // 8:010x}"
            payload = (f'{{"actor":null,"data":{{"tool":"{TOOLS[seq % len(TOOLS)]}"}},'
                       f'"event_key":"gate:{seq}","reason":"{WORDS[rng.randrange(len(WORDS))]}",'
                       f'"rule_id":"read.green","step":"{seq % 7}","verdict":"green"}}')
            at = T0 + seq * 0.5
            digest = _audit_hash(seq, prev, run_id, payload, at)
            if seq <= 3 and digest != entry_hash(seq, prev, "gate", run_id,
                                                 json.loads(payload), at):
                raise RuntimeError("the bench's audit hashing drifted from entry_hash")
            rows.append((seq, prev, digest, "gate", run_id, payload, at,
                         f"{run_id}\x1fevent\x1fgate:{seq}"))
            prev = digest
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def ensure_store(out: Path, n: int) -> tuple[Path, dict[str, Any]]:
    """The cached store for n runs under `out`, built if missing; (home, build info)."""
    home = out / f"tracestore-{n}"
    marker = home / "complete.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        info["cached"] = True
        return home, info
    home.mkdir(parents=True, exist_ok=True)
    customers = max(1000, n // 50)
    info = {"runs": n, "customers": customers, "audit_entries": n,
            "traces_load_s": build_traces(home, n, customers),
            "audit_load_s": build_audit(home, n)}
    marker.write_text(json.dumps(info))
    info["cached"] = False
    return home, info


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(out: Path, *, n: int, queries: int) -> dict[str, Any]:
    home, info = ensure_store(out, n)
    customers = info["customers"]
    rng = random.Random(SEED + 1)

    def random_run() -> str:
        return f"run-{rng.randrange(n):010x}"

    def random_window() -> dict[str, float]:
        since = T0 + rng.random() * (YEAR - 86_400)
        return {"since": since, "until": since + 86_400}

    searches: dict[str, Callable[[], dict[str, Any]]] = {
        "by run id": lambda: {"run_id": random_run()},
        "by customer": lambda: {"customer_id": f"CUS-{rng.randrange(customers):06d}"},
        "by tool": lambda: {"tool": rng.choice(TOOLS)},
        "by outcome": lambda: {"outcome": rng.choice(OUTCOMES)},
        "free text": lambda: {"text": rng.choice(WORDS)},
        "time range (1 day)": random_window,
        "customer + time range (30 days)": lambda: {
            "customer_id": f"CUS-{rng.randrange(customers):06d}", "since": T0,
            "until": T0 + 30 * 86_400},
    }
    results = []
    search_traces(home, run_id=random_run())  # warm the page cache once
    for name, make in searches.items():
        times, hits = [], 0
        for _ in range(queries):
            kwargs = make()
            started = time.perf_counter()
            found = search_traces(home, limit=50, **kwargs)
            times.append(time.perf_counter() - started)
            hits += len(found)
        results.append({"search": name, "queries": queries, "p50_s": percentile(times, 50),
                        "p95_s": percentile(times, 95), "mean_hits": hits / queries})
    verification = None
    started = time.perf_counter()
    verification = verify_audit(home)
    verify_s = time.perf_counter() - started
    if not verification.ok or verification.entries_checked != n:
        raise RuntimeError(f"synthetic audit chain did not verify: {verification}")
    sizes = {f.name: f.stat().st_size for f in home.glob("*.db")}
    return {**info, "searches": results, "verify_s": verify_s,
            "verified_entries": verification.entries_checked, "file_bytes": sizes}
