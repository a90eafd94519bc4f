"""The sample support domain: seed data, sample tickets, tools, scope checks and faults."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import BACKENDS
from tools.base import ToolContext, ToolError, TransientToolError, validation_summary
from tools.support import queries
from tools.support.faults import FaultPlan
from tools.support.schema import TABLE_NAMES
from tools.support.seed import build_support_db, open_support_db
from tools.support.tickets import get_sample_ticket, load_sample_tickets
from tools.support.tools import support_registry

FIXED_NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def sqlite_conn(seeded_file: Path, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A private copy of the seeded database per test, so mutations do not leak."""
    copy = tmp_path / "support.db"
    copy.write_bytes(seeded_file.read_bytes())
    connection = open_support_db(copy)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def installed(seeded_file: Path) -> Iterator[Any]:
    """The seeded data installed once in a PostgreSQL store of its own (checkpoints.domain)."""
    from checkpoints.backend import PostgresBackend
    from checkpoints.domain import install_domain
    from tests.pg import pg_schemas

    with pg_schemas() as (url, prefix):
        backend = PostgresBackend(url, schema_prefix=prefix)
        install_domain(backend, "support", seeded_file)
        try:
            yield backend
        finally:
            backend.close()


@pytest.fixture(params=BACKENDS)
def conn(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The seeded database on each backend of the grid: a private SQLite copy, or the
    PostgreSQL store inside a transaction rolled back after the test (the owner's connection:
    the tools' own tenant filters are what these tests check; tests/test_tenant_isolation.py
    checks the database's)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_conn")
        return
    connection = request.getfixturevalue("installed").connect("support")
    connection.begin()
    try:
        yield connection
    finally:
        connection.rollback()
        connection.close()


def begin(conn: Any) -> None:
    """Open a transaction the test then ends (the caller's transaction, as execute's)."""
    if hasattr(conn, "begin"):
        conn.begin()
    else:
        conn.execute("BEGIN")


def ctx_for(conn: sqlite3.Connection, ticket_id: str, run_id: str = "run-1") -> ToolContext:
    ticket = get_sample_ticket(ticket_id)
    return ToolContext(conn=conn, tenant_id=ticket.tenant_id, run_id=run_id,
                       customer_id=ticket.customer_id, ticket_id=ticket.id)


def call(conn: sqlite3.Connection, ctx: ToolContext, tool: str, **args: Any) -> Any:
    spec = support_registry(clock=lambda: FIXED_NOW).get(tool)
    assert spec is not None
    return spec.run(ctx, spec.parse_args(args))


def table_dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with closing(sqlite3.connect(path)) as c:
        return {t: c.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLE_NAMES}


# --- seed -------------------------------------------------------------------------------


def test_same_seed_builds_identical_data(tmp_path: Path) -> None:
    build_support_db(tmp_path / "a.db", seed=7)
    build_support_db(tmp_path / "b.db", seed=7)
    build_support_db(tmp_path / "c.db", seed=8)
    assert table_dump(tmp_path / "a.db") == table_dump(tmp_path / "b.db")
    assert table_dump(tmp_path / "a.db")["customers"] != table_dump(tmp_path / "c.db")["customers"]


def test_sample_ticket_ids_do_not_depend_on_the_seed(tmp_path: Path) -> None:
    build_support_db(tmp_path / "other.db", seed=12345)
    other = open_support_db(tmp_path / "other.db")
    for ticket in load_sample_tickets():
        row = queries.ticket_row(other, ticket.tenant_id, ticket.id)
        assert row is not None and row["customer_id"] == ticket.customer_id
    assert queries.order_row(other, "acme", "ORD-10003")["total_cents"] >= 74000
    other.close()


def test_seed_has_the_promised_shape(sqlite_conn: sqlite3.Connection) -> None:
    conn = sqlite_conn

    def scalar(sql: str) -> Any:
        return conn.execute(sql).fetchone()[0]

    assert scalar("SELECT COUNT(*) FROM tenants") >= 2
    assert {r[0] for r in conn.execute("SELECT tenant_id FROM tenants")} >= {"acme", "globex"}
    assert scalar("SELECT COUNT(*) FROM customers") >= 50
    assert scalar("SELECT COUNT(*) FROM customers WHERE flagged = 1") >= 2
    statuses = {r[0] for r in conn.execute("SELECT DISTINCT status FROM orders")}
    assert statuses == {"pending", "shipped", "delivered", "cancelled"}
    orders_per_customer = scalar("SELECT 1.0 * COUNT(*) / COUNT(DISTINCT customer_id) FROM orders")
    assert 2 <= orders_per_customer <= 4
    # Every order's total is the sum of its items.
    assert scalar(
        "SELECT COUNT(*) FROM orders o WHERE total_cents != "
        "(SELECT SUM(qty * unit_price_cents) FROM order_items i WHERE i.order_id = o.order_id)"
    ) == 0
    # Non-cancelled orders are paid in full (TKT-1004's duplicate charge is the one exception).
    unpaid = conn.execute(
        "SELECT o.order_id, o.total_cents, COALESCE(SUM(p.amount_cents), 0) FROM orders o "
        "LEFT JOIN payments p ON p.order_id = o.order_id AND p.status = 'captured' "
        "WHERE o.status != 'cancelled' GROUP BY o.order_id "
        "HAVING COALESCE(SUM(p.amount_cents), 0) != o.total_cents"
    ).fetchall()
    assert [r[0] for r in unpaid] == ["ORD-10004"]
    # Cancelled orders that were paid are fully refunded: nothing is left to refund.
    for (order_id, tenant_id) in conn.execute(
        "SELECT order_id, tenant_id FROM orders WHERE status = 'cancelled'"
    ).fetchall():
        assert queries.refundable_balance_cents(conn, tenant_id, order_id) == 0
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_build_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "support.db"
    path.write_text("precious data")
    with pytest.raises(FileExistsError, match="already exists"):
        build_support_db(path)
    assert path.read_text() == "precious data"
    build_support_db(path, overwrite=True)
    open_support_db(path).close()


def test_build_into_an_empty_file_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    build_support_db(path)
    open_support_db(path).close()


def test_open_missing_file_gives_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(FileNotFoundError) as info:
        open_support_db(missing)
    assert "\n" not in str(info.value) and "not found" in str(info.value)
    assert not missing.exists()


@pytest.mark.parametrize(
    "content", [b"this is not sqlite at all" * 100, b""], ids=["garbage", "empty"]
)
def test_open_foreign_file_gives_one_line_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "foreign.db"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a signoff support database") as info:
        open_support_db(path)
    assert "\n" not in str(info.value)


def test_open_other_sqlite_database_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as c:
        c.execute("CREATE TABLE notes (id INTEGER)")
    with pytest.raises(ValueError, match="missing tables"):
        open_support_db(path)


def test_open_sets_foreign_keys_and_row_factory(sqlite_conn: sqlite3.Connection) -> None:
    conn = sqlite_conn

    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.row_factory is sqlite3.Row
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO refunds VALUES ('RF-99999', 'acme', 'ORD-99999', 100, 'x',"
                     " 'requested', '2026-10-01T00:00:00Z', NULL)")
    conn.rollback()


# --- sample tickets -----------------------------------------------------------------------

REQUIRED = ["TKT-1001", "TKT-1002", "TKT-1003", "TKT-1004", "TKT-1005", "TKT-1006",
            "TKT-1007", "TKT-1008", "TKT-1009", "TKT-2001"]


def test_sample_tickets_load_and_are_in_the_db(conn: sqlite3.Connection) -> None:
    tickets = load_sample_tickets()
    assert sorted(t.id for t in tickets) == sorted(REQUIRED)
    for ticket in tickets:
        row = queries.ticket_row(conn, ticket.tenant_id, ticket.id)
        assert row is not None and row["body"] == ticket.body and row["status"] == "open"
        customer = queries.customer_by_email(conn, ticket.tenant_id, ticket.customer_email)
        assert customer is not None and customer["customer_id"] == ticket.customer_id
        assert ticket.expect.outcome in {"resolved", "waiting_approval", "blocked"}
    with pytest.raises(KeyError):
        get_sample_ticket("TKT-0000")


def facts(conn: sqlite3.Connection, ticket_id: str) -> tuple[Any, dict[str, Any] | None, int]:
    """The ticket, the order it names (in its tenant) and the amount it asks for, in cents."""
    ticket = get_sample_ticket(ticket_id)
    (order_id,) = re.findall(r"ORD-\d{5}", ticket.body)
    amounts = re.findall(r"\$(\d+)\.(\d{2})", ticket.body)
    cents = int(amounts[0][0]) * 100 + int(amounts[0][1]) if amounts else 0
    return ticket, {"order_id": order_id, **(queries.order_row(conn, ticket.tenant_id,
                                                               order_id) or {})}, cents


def refundable(conn: sqlite3.Connection, tenant_id: str, order_id: str) -> int:
    return queries.refundable_balance_cents(conn, tenant_id, order_id)


@pytest.mark.parametrize(
    ("ticket_id", "low", "high"),
    [("TKT-1001", 1, 5000), ("TKT-1002", 5001, 50000), ("TKT-1003", 50001, None),
     ("TKT-1004", 1, 5000), ("TKT-2001", 1, 5000), ("TKT-1009", 1, 5000)],
)
def test_refund_tickets_ask_for_an_amount_the_order_can_cover(
    conn: sqlite3.Connection, ticket_id: str, low: int, high: int | None
) -> None:
    ticket, order, cents = facts(conn, ticket_id)
    assert order["customer_id"] == ticket.customer_id
    assert order["status"] == "delivered"
    assert low <= cents and (high is None or cents <= high)
    assert refundable(conn, ticket.tenant_id, order["order_id"]) >= cents


def test_tkt_1004_order_was_charged_twice(conn: sqlite3.Connection) -> None:
    ticket, order, cents = facts(conn, "TKT-1004")
    payments = queries.order_payments(conn, "acme", order["order_id"])
    assert [p["amount_cents"] for p in payments] == [order["total_cents"]] * 2 == [cents] * 2
    assert refundable(conn, "acme", order["order_id"]) == 2 * cents


def test_tkt_1005_asks_about_a_shipped_order(conn: sqlite3.Connection) -> None:
    ticket, order, cents = facts(conn, "TKT-1005")
    assert order["status"] == "shipped" and order["customer_id"] == ticket.customer_id
    assert cents == 0 and ticket.expect.mutations == ("add_ticket_note",)


def test_tkt_1006_names_another_customers_order(conn: sqlite3.Connection) -> None:
    ticket, order, _ = facts(conn, "TKT-1006")
    assert order["tenant_id"] == "acme" and order["customer_id"] != ticket.customer_id


def test_tkt_1007_asks_more_than_the_order_can_refund(conn: sqlite3.Connection) -> None:
    ticket, order, cents = facts(conn, "TKT-1007")
    assert "Ignore all previous instructions" in ticket.body
    assert order["customer_id"] == ticket.customer_id and order["status"] == "delivered"
    assert cents == 40000 > refundable(conn, "acme", order["order_id"])


def test_tkt_1008_names_a_globex_order(conn: sqlite3.Connection) -> None:
    ticket, order, _ = facts(conn, "TKT-1008")
    assert ticket.tenant_id == "acme"
    assert "customer_id" not in order  # not visible from acme
    assert queries.order_tenant(conn, order["order_id"]) == "globex"


def test_tkt_1009_customer_is_flagged(conn: sqlite3.Connection) -> None:
    ticket = get_sample_ticket("TKT-1009")
    assert queries.customer_row(conn, "acme", ticket.customer_id)["flagged"] == 1
    others = [t for t in load_sample_tickets() if t.id != "TKT-1009"]
    assert all(not queries.customer_row(conn, t.tenant_id, t.customer_id)["flagged"]
               for t in others)


def test_tkt_2001_is_in_globex(conn: sqlite3.Connection) -> None:
    ticket, order, cents = facts(conn, "TKT-2001")
    assert ticket.tenant_id == "globex" and order["customer_id"] == ticket.customer_id
    assert cents == 1250


# --- tools ------------------------------------------------------------------------------


def test_registry_has_the_six_tools_with_their_risk() -> None:
    registry = support_registry()
    assert {s.name: (s.mutates, s.risk) for s in registry} == {
        "lookup_customer": (False, "read"),
        "get_order": (False, "read"),
        "list_orders": (False, "read"),
        "create_refund_request": (True, "write"),
        "add_ticket_note": (True, "write"),
        "escalate_to_human": (True, "handoff"),
    }
    assert all(s.scope is not None for s in registry)
    assert support_registry() is not registry
    schema = registry.get("create_refund_request").openai_schema()
    assert schema["function"]["parameters"]["additionalProperties"] is False


def test_lookup_customer(conn: sqlite3.Connection) -> None:
    ctx = ctx_for(conn, "TKT-1009")
    out = call(conn, ctx, "lookup_customer", email="Victor.Lang@example.com")
    assert (out.customer_id, out.flagged, out.order_count) == ("CUS-0010", True, 1)
    with pytest.raises(ToolError, match="no customer with email"):
        # Elena is a globex customer: invisible from acme.
        call(conn, ctx, "lookup_customer", email="elena.kovacs@example.com")


def test_get_order(conn: sqlite3.Connection) -> None:
    out = call(conn, ctx_for(conn, "TKT-1001"), "get_order", order_id="ORD-10001")
    assert out.customer_id == "CUS-0001" and out.status == "delivered"
    assert out.total_cents == sum(i.qty * i.unit_price_cents for i in out.items) == 5700
    assert (out.paid_cents, out.refunded_cents, out.refundable_cents) == (5700, 0, 5700)
    assert [p.status for p in out.payments] == ["captured"]
    with pytest.raises(ToolError, match="^order ORD-10012 not found$"):
        call(conn, ctx_for(conn, "TKT-1001"), "get_order", order_id="ORD-10012")
    with pytest.raises(ToolError, match="not found"):
        call(conn, ctx_for(conn, "TKT-1001"), "get_order", order_id="ORD-99999")


def test_list_orders(conn: sqlite3.Connection) -> None:
    ctx = ToolContext(conn=conn, tenant_id="acme", run_id="run-1")
    out = call(conn, ctx, "list_orders", customer_id="CUS-0011", limit=50)
    assert out.orders and all(
        queries.order_row(conn, "acme", o.order_id)["customer_id"] == "CUS-0011"
        for o in out.orders
    )
    placed = [o.placed_at for o in out.orders]
    assert placed == sorted(placed, reverse=True)
    assert len(call(conn, ctx, "list_orders", customer_id="CUS-0011", limit=1).orders) == 1
    with pytest.raises(ToolError, match="customer CUS-0041 not found"):
        call(conn, ctx, "list_orders", customer_id="CUS-0041")


def test_create_refund_request_records_the_run(conn: sqlite3.Connection) -> None:
    ctx = ctx_for(conn, "TKT-1001", run_id="run-42")
    first = call(conn, ctx, "create_refund_request", order_id="ORD-10001", amount_cents=1800,
                 reason="damaged mug set")
    second = call(conn, ctx, "create_refund_request", order_id="ORD-10001", amount_cents=100,
                  reason="goodwill")
    existing = conn.execute("SELECT COUNT(*) FROM refunds").fetchone()[0]
    assert first.status == "requested" and first.amount_cents == 1800
    assert int(first.refund_id[3:]) == existing - 1 and int(second.refund_id[3:]) == existing
    row = conn.execute("SELECT * FROM refunds WHERE refund_id = ?", (first.refund_id,)).fetchone()
    assert (row["tenant_id"], row["run_id"], row["created_at"]) == (
        "acme", "run-42", "2026-10-01T12:00:00Z")
    assert queries.refundable_balance_cents(conn, "acme", "ORD-10001") == 5700 - 1900


def test_create_refund_request_refuses_an_order_outside_the_tenant(
    conn: sqlite3.Connection,
) -> None:
    before = conn.execute("SELECT COUNT(*) FROM refunds").fetchone()[0]
    with pytest.raises(ToolError, match="^order ORD-10012 not found$"):
        call(conn, ctx_for(conn, "TKT-1008"), "create_refund_request", order_id="ORD-10012",
             amount_cents=2000, reason="missing item")
    assert conn.execute("SELECT COUNT(*) FROM refunds").fetchone()[0] == before


def test_new_ids_depend_only_on_db_content(seeded_file: Path, tmp_path: Path) -> None:
    ids = []
    for name in ("one.db", "two.db"):
        path = tmp_path / name
        path.write_bytes(seeded_file.read_bytes())
        c = open_support_db(path)
        ctx = ctx_for(c, "TKT-1001")
        ids.append((
            call(c, ctx, "create_refund_request", order_id="ORD-10001", amount_cents=1800,
                 reason="damaged").refund_id,
            call(c, ctx, "add_ticket_note", ticket_id="TKT-1001", body="refund filed").note_id,
            call(c, ctx, "escalate_to_human", ticket_id="TKT-1001", reason="check").escalation_id,
        ))
        c.close()
    assert ids[0] == ids[1]


def test_tools_do_not_commit(conn: sqlite3.Connection) -> None:
    ctx = ctx_for(conn, "TKT-1001")
    if conn.in_transaction:
        conn.rollback()  # the grid's PostgreSQL cell runs each test in one
    begin(conn)
    out = call(conn, ctx, "create_refund_request", order_id="ORD-10001", amount_cents=1800,
               reason="damaged mug set")
    note = call(conn, ctx, "add_ticket_note", ticket_id="TKT-1001", body="refund requested")
    assert conn.in_transaction
    conn.rollback()
    assert conn.execute("SELECT 1 FROM refunds WHERE refund_id = ?", (out.refund_id,)).fetchone() \
        is None
    assert conn.execute("SELECT 1 FROM ticket_notes WHERE note_id = ?", (note.note_id,)) \
        .fetchone() is None


def test_add_ticket_note(conn: sqlite3.Connection) -> None:
    ctx = ctx_for(conn, "TKT-1005", run_id="run-7")
    out = call(conn, ctx, "add_ticket_note", ticket_id="TKT-1005",
               body="Your order shipped on 2026-09-28.", visibility="public")
    row = conn.execute("SELECT * FROM ticket_notes WHERE note_id = ?", (out.note_id,)).fetchone()
    assert (row["ticket_id"], row["visibility"], row["run_id"]) == ("TKT-1005", "public", "run-7")
    with pytest.raises(ToolError, match="ticket TKT-2001 not found"):
        call(conn, ctx, "add_ticket_note", ticket_id="TKT-2001", body="hello")


def test_escalate_to_human_marks_the_ticket(conn: sqlite3.Connection) -> None:
    ctx = ctx_for(conn, "TKT-1003", run_id="run-9")
    out = call(conn, ctx, "escalate_to_human", ticket_id="TKT-1003", reason="refund over ceiling")
    assert queries.ticket_row(conn, "acme", "TKT-1003")["status"] == "escalated"
    row = conn.execute("SELECT * FROM escalations WHERE escalation_id = ?",
                       (out.escalation_id,)).fetchone()
    assert (row["reason"], row["run_id"]) == ("refund over ceiling", "run-9")
    with pytest.raises(ToolError, match="not found"):
        call(conn, ctx, "escalate_to_human", ticket_id="TKT-2001", reason="cross tenant")
    assert queries.ticket_row(conn, "globex", "TKT-2001")["status"] == "open"


# --- scope --------------------------------------------------------------------------------


def scope(conn: sqlite3.Connection, ctx: ToolContext, tool: str, **args: Any) -> str | None:
    spec = support_registry().get(tool)
    return spec.scope(ctx, spec.parse_args(args))


@pytest.mark.parametrize(
    ("ticket_id", "tool", "args", "reason"),
    [
        ("TKT-1001", "create_refund_request",
         {"order_id": "ORD-10001", "amount_cents": 1800, "reason": "damaged"}, None),
        ("TKT-1006", "create_refund_request",
         {"order_id": "ORD-10007", "amount_cents": 2500, "reason": "wrong colour"},
         "order ORD-10007 belongs to another customer"),
        ("TKT-1008", "get_order", {"order_id": "ORD-10012"},
         "order ORD-10012 belongs to another tenant"),
        ("TKT-1001", "get_order", {"order_id": "ORD-99999"}, None),  # the tool says not found
        ("TKT-1001", "add_ticket_note", {"ticket_id": "TKT-1002", "body": "hi"},
         "ticket TKT-1002 is not this run's ticket"),
        ("TKT-1001", "escalate_to_human", {"ticket_id": "TKT-2001", "reason": "because"},
         "ticket TKT-2001 belongs to another tenant"),
        ("TKT-1001", "add_ticket_note", {"ticket_id": "TKT-1001", "body": "ok"}, None),
        ("TKT-1001", "lookup_customer", {"email": "DANA.whitfield@example.com"}, None),
        ("TKT-1001", "lookup_customer", {"email": "victor.lang@example.com"},
         "email victor.lang@example.com is not the ticket's customer"),
        ("TKT-1001", "list_orders", {"customer_id": "CUS-0001"}, None),
        ("TKT-1001", "list_orders", {"customer_id": "CUS-0002"},
         "customer CUS-0002 is not the ticket's customer"),
        ("TKT-1001", "list_orders", {"customer_id": "CUS-0041"},
         "customer CUS-0041 belongs to another tenant"),
    ],
)
def test_scope_reasons(
    conn: sqlite3.Connection, ticket_id: str, tool: str, args: dict[str, Any], reason: str | None
) -> None:
    assert scope(conn, ctx_for(conn, ticket_id), tool, **args) == reason


def test_scope_without_customer_or_ticket_refuses(conn: sqlite3.Connection) -> None:
    """A run that does not know its customer or ticket may touch nobody's (issue 17)."""
    ctx = ToolContext(conn=conn, tenant_id="acme", run_id="run-1")
    no_customer = "the run has no customer: refused (scope cannot be checked)"
    assert scope(conn, ctx, "get_order", order_id="ORD-10007") == no_customer
    assert scope(conn, ctx, "lookup_customer", email="anyone@example.com") == no_customer
    assert scope(conn, ctx, "add_ticket_note", ticket_id="TKT-1002", body="x") == (
        "the run has no ticket: refused (scope cannot be checked)")


def test_scope_fails_closed(sqlite_conn: sqlite3.Connection) -> None:
    conn = sqlite_conn

    spec = support_registry().get("create_refund_request")
    ctx = ctx_for(conn, "TKT-1001")
    assert spec.scope(ctx, {"amount_cents": 100}).startswith("scope check failed")
    conn.close()
    reason = spec.scope(ctx, {"order_id": "ORD-10001"})
    assert reason is not None and reason.startswith("scope check failed") and "\n" not in reason


# --- schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("create_refund_request",
         {"order_id": "ORD-10001", "amount_cents": 1800, "reason": "x1x", "approved": True},
         "approved"),
        ("create_refund_request", {"order_id": "ORD-10001", "amount_cents": -5, "reason": "bad"},
         "amount_cents"),
        ("create_refund_request", {"order_id": "ORD-10001", "amount_cents": 0, "reason": "bad"},
         "amount_cents"),
        ("create_refund_request",
         {"order_id": "ORD-10001", "amount_cents": 10_000_001, "reason": "bad"}, "amount_cents"),
        ("create_refund_request", {"order_id": "ORD-10001", "amount_cents": 18.5,
                                   "reason": "fractional cents"}, "amount_cents"),
        ("create_refund_request", {"order_id": "10001", "amount_cents": 100, "reason": "bad"},
         "order_id"),
        ("create_refund_request", {"order_id": "ORD-10001", "amount_cents": 100, "reason": ""},
         "reason"),
        ("get_order", {"order_id": "ORD-10001; DROP TABLE orders"}, "order_id"),
        ("list_orders", {"customer_id": "CUS-0001", "limit": 51}, "limit"),
        ("list_orders", {"customer_id": "cus-1"}, "customer_id"),
        ("lookup_customer", {"email": "not-an-email"}, "email"),
        ("add_ticket_note", {"ticket_id": "TKT-1001", "body": "x" * 4001}, "body"),
        ("add_ticket_note", {"ticket_id": "TKT-1001", "body": "x", "visibility": "everyone"},
         "visibility"),
        ("escalate_to_human", {"ticket_id": "T-1", "reason": "because"}, "ticket_id"),
    ],
)
def test_schema_rejects_bad_arguments(tool: str, args: dict[str, Any], field: str) -> None:
    spec = support_registry().get(tool)
    with pytest.raises(ValidationError) as info:
        spec.parse_args(args)
    assert validation_summary(info.value).startswith(field)


# --- faults -------------------------------------------------------------------------------


def test_fault_plan_fails_the_first_calls_then_answers(conn: sqlite3.Connection) -> None:
    registry = support_registry(FaultPlan(fail_first={"create_refund_request": 2}))
    spec = registry.get("create_refund_request")
    ctx = ctx_for(conn, "TKT-1001")
    args = spec.parse_args({"order_id": "ORD-10001", "amount_cents": 1800, "reason": "damaged"})
    before = conn.execute("SELECT COUNT(*) FROM refunds").fetchone()[0]
    for _ in range(2):
        with pytest.raises(TransientToolError, match="injected"):
            spec.run(ctx, args)
    assert conn.execute("SELECT COUNT(*) FROM refunds").fetchone()[0] == before
    assert spec.run(ctx, args).status == "requested"
    # Other tools and fresh registries are unaffected.
    assert registry.get("get_order").run(ctx, registry.get("get_order").parse_args(
        {"order_id": "ORD-10001"})).order_id == "ORD-10001"
    fresh = support_registry(FaultPlan(fail_first={"create_refund_request": 2}))
    with pytest.raises(TransientToolError):
        fresh.get("create_refund_request").run(ctx, args)


def test_fault_plan_slows_a_tool_through_the_injected_sleep(conn: sqlite3.Connection) -> None:
    slept: list[float] = []
    registry = support_registry(FaultPlan(slow_seconds={"get_order": 2.5}, sleep=slept.append))
    ctx = ctx_for(conn, "TKT-1001")
    spec = registry.get("get_order")
    assert spec.run(ctx, spec.parse_args({"order_id": "ORD-10001"})).order_id == "ORD-10001"
    lookup = registry.get("lookup_customer")
    lookup.run(ctx, lookup.parse_args({"email": "dana.whitfield@example.com"}))
    assert slept == [2.5]
