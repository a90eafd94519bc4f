"""Cumulative limits: policy conditions read aggregates of committed mutations (per order,
customer or tenant, within a window), `policy check` validates them with their lines, and
`policy explain` shows the values a decision read."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from cli.main import app
from graph.observe import recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tests.conftest import BACKENDS
from tests.domain_grid import domain_rows
from tools.ledger import commit_once, ensure_ledger
from verifiers.aggregates import Aggregate, parse_window
from verifiers.expr import ExprError
from verifiers.policy import PolicyError, parse_policy

SUPPORT = get_workflow("support")
TEXT = SUPPORT.policy_path.read_text()
TOOLS = SUPPORT.tools()
REQUESTER = "ops@signoff.local"
CHLOE = "chloe.brooks.25@example.com"  # ORD-10048: $205.00 paid, nothing refunded
DAY = 86400.0


def refund_49(runner: Runner, n: int) -> tuple[str, str | None, str]:
    ticket = runner.intake("support", tenant_id="acme", email=CHLOE, subject=f"Lid {n}",
                           body=f"The lid on order ORD-10048 is cracked ({n}). Please refund "
                                "$49.00.")
    result = runner.start("support", ticket, requester=REQUESTER)
    return result.status, result.reason, result.run_id


def test_four_small_refunds_on_one_order_are_not_all_automatic(backend_runner: Runner,
                                                               backend_home: Home) -> None:
    outcomes = [refund_49(backend_runner, n) for n in range(4)]
    assert outcomes[0][0] == "resolved"
    for status, reason, _ in outcomes[1:]:
        assert status == "waiting_approval"
        assert reason and reason.startswith("held by refund.cumulative_on_order: more than "
                                            "$50.00 refunded on one order within 30 days")
    assert domain_rows(backend_home, "support", "SELECT SUM(amount_cents) FROM refunds WHERE "
                       "order_id = 'ORD-10048'") == [(4900,)]
    explained = CliRunner().invoke(app, ["policy", "explain", outcomes[1][2]]).stdout
    assert "gate        yellow  rule refund.cumulative_on_order [support.toml:" in explained
    assert "when aggregates.refunded_on_order_30d + args.amount_cents > 5000]" in explained
    assert "aggregate refunded_on_order_30d = 4900" in explained


def test_refunds_older_than_the_window_do_not_count(backend_home: Home) -> None:
    now = [1_800_000_000.0]
    runner = Runner(backend_home, recorder_factory=recorder_factory(), clock=lambda: now[0])
    try:
        runner.ensure_domain_db(SUPPORT, reset=True)
        assert refund_49(runner, 0)[0] == "resolved"
        now[0] += 29 * DAY
        assert refund_49(runner, 1)[0] == "waiting_approval"  # 29 days: still inside
        now[0] += 2 * DAY
        assert refund_49(runner, 2)[0] == "resolved"  # the first one is 31 days old
    finally:
        runner.close()


# The aggregate itself, over a ledger ----------------------------------------------------

class _Out(BaseModel):
    ok: bool = True


Rows = list[tuple[str, str, str, dict[str, object], float]]


@pytest.fixture(params=BACKENDS)
def ledger_with(request: pytest.FixtureRequest) -> Iterator[Callable[[Rows], Any]]:
    """Makes a ledger holding (tenant, customer, tool, args, committed_at) rows, on each
    backend: an in-memory SQLite database, or a PostgreSQL schema of its own."""
    def fill(conn: Any, rows: Rows) -> Any:
        ensure_ledger(conn)
        for n, (tenant, customer, tool, args, at) in enumerate(rows):
            commit_once(conn, key=f"k{n}", run_id=f"run-{n}", step=1, tool=tool, args=args,
                        apply=_Out, clock=lambda at=at: at, tenant_id=tenant,
                        customer_id=customer)
        return conn

    if request.param == "sqlite":
        yield lambda rows: fill(sqlite3.connect(":memory:"), rows)
        return
    import psycopg

    from checkpoints.sql import PgConnection
    from tests.pg import pg_schemas

    with pg_schemas() as (url, prefix):
        with psycopg.connect(url, autocommit=True) as raw:
            raw.execute(f'CREATE SCHEMA "{prefix}ledger"')
            raw.execute(f'SET search_path TO "{prefix}ledger"')
            yield lambda rows: fill(PgConnection(raw), rows)


ROWS = [("acme", "CUS-1", "create_refund_request", {"order_id": "O-1", "amount_cents": 100}, 0.0),
        ("acme", "CUS-1", "create_refund_request", {"order_id": "O-2", "amount_cents": 200}, 50.0),
        ("acme", "CUS-2", "create_refund_request", {"order_id": "O-3", "amount_cents": 400}, 90.0),
        ("globex", "CUS-9", "create_refund_request", {"order_id": "O-9", "amount_cents": 800},
         90.0),
        ("acme", "CUS-1", "add_ticket_note", {"ticket_id": "T-1"}, 95.0)]


@pytest.mark.parametrize("per, sum_arg, window, expected", [
    ("order_id", "amount_cents", None, 200),      # the same order as the call: O-2
    ("customer", "amount_cents", None, 300),      # CUS-1's refunds
    ("tenant", "amount_cents", None, 700),        # acme's, never globex's
    ("tenant", "amount_cents", 60.0, 600),        # committed at or after t=40
    ("customer", None, None, 2),                  # a count
])
def test_aggregate_values(per: str, sum_arg: str | None, window: float | None,
                          expected: int, ledger_with: Callable[[Rows], Any]) -> None:
    conn = ledger_with(ROWS)
    aggregate = Aggregate("x", ("create_refund_request",), sum_arg, per, window)
    assert aggregate.value(conn, tenant_id="acme", customer_id="CUS-1",
                           args={"order_id": "O-2", "amount_cents": 1}, now=100.0) == expected


def test_an_aggregate_that_cannot_be_computed_is_an_expression_error(
        ledger_with: Callable[[Rows], Any]) -> None:
    conn = ledger_with([])
    per_order = Aggregate("x", ("create_refund_request",), "amount_cents", "order_id", None)
    with pytest.raises(ExprError, match="no argument 'order_id'"):
        per_order.value(conn, tenant_id="acme", customer_id="C", args={}, now=0.0)
    per_customer = Aggregate("x", ("create_refund_request",), None, "customer", None)
    with pytest.raises(ExprError, match="no customer"):
        per_customer.value(conn, tenant_id="acme", customer_id=None, args={}, now=0.0)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("24h", 86400),
                                           ("30d", 2592000)])
def test_windows(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


# policy check ---------------------------------------------------------------------------

def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if fragment in line)


@pytest.mark.parametrize("old, new, anchor, message", [
    ('window = "30d"', 'window = "30 days"', "window = ",
     "aggregate 'refunded_on_order_30d': window '30 days' is not a duration like 90s"),
    ('window = "30d"', 'window = "0d"', "window = ", "is not a duration"),
    ('when = "aggregates.refunded_on_order_30d + ', 'when = "aggregates.refunded_30d + ',
     "aggregates.refunded_30d", "rule 'refund.cumulative_on_order': unknown aggregate "
     "'refunded_30d' (declared: refunded_on_order_30d)"),
    ('when = "aggregates.refunded_on_order_30d + ', 'when = "aggregates + ',
     'when = "aggregates + ', "use an aggregate by name: aggregates.<name>"),
    ('sum = "amount_cents"', 'sum = "amount"', 'sum = "amount"',
     "aggregate 'refunded_on_order_30d': sum = 'amount' is not an argument of "
     "create_refund_request"),
    ('per = "order_id"', 'per = "order"', 'per = "order"',
     "per = 'order' is not an argument of create_refund_request"),
    ('tools = ["create_refund_request"]\nsum', 'tools = ["refund_all"]\nsum',
     'tools = ["refund_all"]', "names tool 'refund_all' that is not in allowed_tools"),
    ('per = "order_id"', 'per = "order_id"\nwhere = "x"', 'where = "x"',
     "aggregates.refunded_on_order_30d.where: Extra inputs are not permitted"),
])
def test_policy_check_names_the_line_of_a_bad_aggregate(tmp_path: Path, old: str, new: str,
                                                        anchor: str, message: str) -> None:
    assert old in TEXT
    text = TEXT.replace(old, new, 1)
    path = tmp_path / "policy.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith(f"error: {path}:{line_of(text, anchor)}: "), first
    assert message in first
    with pytest.raises(PolicyError):  # the runner refuses it too
        parse_policy(text, known_tools=set(TOOLS.names()), tool_args=TOOLS.argument_names())


def test_the_shipped_policy_declares_and_uses_the_order_aggregate() -> None:
    policy = parse_policy(TEXT, known_tools=set(TOOLS.names()),
                          tool_args=TOOLS.argument_names())
    assert policy.aggregates["refunded_on_order_30d"] == Aggregate(
        "refunded_on_order_30d", ("create_refund_request",), "amount_cents", "order_id",
        30 * DAY, line_of(TEXT, "[aggregates.refunded_on_order_30d]"))
    rule = policy.rule("refund.cumulative_on_order")
    assert rule is not None and rule.tier == "yellow" and rule.approver_roles == ("support_lead",)
