"""Exactly-once on each backend of the grid: two workers committing the same idempotency key
at once apply it once; writers committing different keys at once serialise (one write lock per
domain: BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), so their read-then-insert
ids never collide; a replay from before a refund does not refund again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from checkpoints.saver import DURABILITY, thread_config
from graph.context import RunContext
from graph.factory import build_graph
from graph.runner import Home, Runner, initial_inputs
from graph.workflows import get_workflow
from tests.domain_grid import domain_connection, domain_rows
from tools.base import ToolContext
from tools.ledger import LedgerOutcome, commit_once

SUPPORT = get_workflow("support")
REFUND = SUPPORT.tools().get("create_refund_request")


def in_threads(count: int, work: Callable[[int, Any], Any], home: Home) -> list[Any]:
    """Run work(i, connection) in `count` threads at once, each on its own connection."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def one(i: int) -> None:
        with domain_connection(home, "support", "acme") as conn:
            barrier.wait()
            try:
                results[i] = work(i, conn)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def refund(conn: Any, run_id: str, order_id: str, cents: int, *, key: str,
           dwell: float = 0.0) -> LedgerOutcome:
    """create_refund_request through the ledger, lingering `dwell` seconds before the commit."""
    ctx = ToolContext(conn=conn, tenant_id="acme", run_id=run_id, customer_id=None)
    args = {"order_id": order_id, "amount_cents": cents, "reason": "damaged"}
    return commit_once(conn, key=key, run_id=run_id, step=1, tool=REFUND.name, args=args,
                       apply=lambda: REFUND.run(ctx, REFUND.parse_args(args)),
                       before_commit=lambda: time.sleep(dwell), tenant_id="acme")


def test_one_key_from_two_workers_at_once_commits_once(domain_home: Home) -> None:
    outcomes = in_threads(2, lambda i, conn: refund(conn, "run-same", "ORD-10001", 1800,
                                                     key="same-key", dwell=0.3), domain_home)
    assert all(isinstance(o, LedgerOutcome) for o in outcomes), outcomes
    assert sorted(o.replayed for o in outcomes) == [False, True]
    assert outcomes[0].result == outcomes[1].result  # the second got the first's answer
    assert domain_rows(domain_home, "support", "SELECT COUNT(*) FROM refunds WHERE run_id = ?",
                       ("run-same",)) == [(1,)]
    assert domain_rows(domain_home, "support", "SELECT COUNT(*) FROM mutation_ledger WHERE"
                       " key = 'same-key'") == [(1,)]


def test_writers_at_once_take_turns_and_their_new_ids_never_collide(domain_home: Home) -> None:
    def three_refunds(i: int, conn: Any) -> list[str]:
        return [refund(conn, f"run-{i}", "ORD-10003", 100, key=f"k{i}-{n}", dwell=0.05
                       ).result["refund_id"] for n in range(3)]

    outcomes = in_threads(3, three_refunds, domain_home)
    assert all(isinstance(o, list) for o in outcomes), outcomes
    ids = [refund_id for ids in outcomes for refund_id in ids]
    assert len(set(ids)) == 9
    assert domain_rows(domain_home, "support", "SELECT COUNT(*) FROM refunds WHERE"
                       " run_id LIKE 'run-%'") == [(9,)]


def test_a_replay_from_before_the_refund_does_not_refund_again(domain_home: Home) -> None:
    ticket = next(t for t in SUPPORT.sample_tickets() if t.ticket_id == "TKT-1001")
    runner = Runner(domain_home)
    policy, error = runner.load_policy(SUPPORT)
    planner, checker = runner._models(SUPPORT)
    graph = build_graph().compile(checkpointer=InMemorySaver())
    config = thread_config("run-replay")

    def count() -> dict[str, int]:
        return {table: domain_rows(domain_home, "support", f"SELECT COUNT(*) FROM {table} "
                                   "WHERE run_id = 'run-replay'")[0][0]
                for table in ("refunds", "ticket_notes", "mutation_ledger")}

    try:
        with domain_connection(domain_home, "support", ticket.tenant_id) as db:
            ctx = RunContext(run_id="run-replay", tenant_id=ticket.tenant_id,
                             requester="agent@acme.example", workflow=SUPPORT,
                             registry=SUPPORT.tools(), policy=policy, policy_error=error,
                             planner=planner, checker=checker, db=db, runs=runner.runs)
            final = graph.invoke(initial_inputs("run-replay", ticket, time.time()), config,
                                 context=ctx, durability=DURABILITY)
            assert final["outcome"] == "resolved"
            once = count()
            assert once == {"refunds": 1, "ticket_notes": 1, "mutation_ledger": 2}
            before = next(s for s in graph.get_state_history(config)  # type: ignore[arg-type]
                          if s.next == ("execute",)
                          and (s.values.get("proposal") or {}).get("tool") ==
                          "create_refund_request")
            again = graph.invoke(None, before.config, context=ctx, durability=DURABILITY)
            assert again["outcome"] == "resolved"
    finally:
        runner.close()
    assert count() == once
