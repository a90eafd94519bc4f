"""Table definitions of the support database, shared by the seed and the integrity check."""

from __future__ import annotations

from typing import Any, NamedTuple


class TableDef(NamedTuple):
    """One table of the support database."""

    name: str
    columns: dict[str, Any]
    """Column name -> Python type, in column order."""
    pk: str
    foreign_keys: list[tuple[str, str, str]]
    """(column, other table, other column)."""
    lookups: list[str]
    """Columns indexed for lookups, each together with tenant_id where the table has one."""


TABLES: list[TableDef] = [
    TableDef("tenants", {"tenant_id": str, "name": str, "currency": str}, "tenant_id", [], []),
    TableDef(
        "customers",
        {"customer_id": str, "tenant_id": str, "name": str, "email": str, "phone": str,
         "flagged": int},
        "customer_id",
        [("tenant_id", "tenants", "tenant_id")],
        ["email"],
    ),
    TableDef(
        "orders",
        {"order_id": str, "tenant_id": str, "customer_id": str, "status": str,
         "placed_at": str, "shipped_at": str, "total_cents": int, "currency": str},
        "order_id",
        [("tenant_id", "tenants", "tenant_id"), ("customer_id", "customers", "customer_id")],
        ["customer_id"],
    ),
    TableDef(
        "order_items",
        {"item_id": int, "tenant_id": str, "order_id": str, "sku": str, "name": str,
         "qty": int, "unit_price_cents": int},
        "item_id",
        [("tenant_id", "tenants", "tenant_id"), ("order_id", "orders", "order_id")],
        ["order_id"],
    ),
    TableDef(
        "payments",
        {"payment_id": str, "tenant_id": str, "order_id": str, "amount_cents": int,
         "status": str, "captured_at": str},
        "payment_id",
        [("tenant_id", "tenants", "tenant_id"), ("order_id", "orders", "order_id")],
        ["order_id"],
    ),
    TableDef(
        "refunds",
        {"refund_id": str, "tenant_id": str, "order_id": str, "amount_cents": int,
         "reason": str, "status": str, "created_at": str, "run_id": str},
        "refund_id",
        [("tenant_id", "tenants", "tenant_id"), ("order_id", "orders", "order_id")],
        ["order_id", "run_id"],
    ),
    TableDef(
        "tickets",
        {"ticket_id": str, "tenant_id": str, "customer_id": str, "subject": str, "body": str,
         "status": str, "created_at": str},
        "ticket_id",
        [("tenant_id", "tenants", "tenant_id"), ("customer_id", "customers", "customer_id")],
        ["customer_id"],
    ),
    TableDef(
        "ticket_notes",
        {"note_id": str, "tenant_id": str, "ticket_id": str, "body": str, "visibility": str,
         "created_at": str, "run_id": str},
        "note_id",
        [("tenant_id", "tenants", "tenant_id"), ("ticket_id", "tickets", "ticket_id")],
        ["ticket_id", "run_id"],
    ),
    TableDef(
        "escalations",
        {"escalation_id": str, "tenant_id": str, "ticket_id": str, "reason": str,
         "created_at": str, "run_id": str},
        "escalation_id",
        [("tenant_id", "tenants", "tenant_id"), ("ticket_id", "tickets", "ticket_id")],
        ["ticket_id", "run_id"],
    ),
]

TABLE_NAMES: frozenset[str] = frozenset(t.name for t in TABLES)

# Columns that may be NULL; every other column is NOT NULL.
NULLABLE: dict[str, set[str]] = {
    "orders": {"shipped_at"},
    "refunds": {"run_id"},
    "ticket_notes": {"run_id"},
    "escalations": {"run_id"},
}
