"""Read helpers over the support database, shared by the tools and the verifier.

Every helper takes the tenant and filters by it, except `*_tenant`, which exist to explain a
cross-tenant block ("belongs to another tenant") and return nothing but a tenant id.
Rows come back as plain dicts, or None when there is no such row in the tenant.
"""

from __future__ import annotations

import sqlite3
from typing import Any

Row = dict[str, Any]


def _one(conn: sqlite3.Connection, sql: str, *params: Any) -> Row | None:
    cursor = conn.execute(sql, params)
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def _all(conn: sqlite3.Connection, sql: str, *params: Any) -> list[Row]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def customer_row(conn: sqlite3.Connection, tenant_id: str, customer_id: str) -> Row | None:
    """The customer with this id in the tenant."""
    return _one(conn, "SELECT * FROM customers WHERE tenant_id = ? AND customer_id = ?",
                tenant_id, customer_id)


def customer_by_email(conn: sqlite3.Connection, tenant_id: str, email: str) -> Row | None:
    """The tenant's customer with this email, compared case-insensitively."""
    return _one(conn, "SELECT * FROM customers WHERE tenant_id = ? AND lower(email) = lower(?)",
                tenant_id, email.strip())


def order_row(conn: sqlite3.Connection, tenant_id: str, order_id: str) -> Row | None:
    """The order with this id in the tenant (customer_id, status, total_cents, placed_at, ...)."""
    return _one(conn, "SELECT * FROM orders WHERE tenant_id = ? AND order_id = ?",
                tenant_id, order_id)


def order_items(conn: sqlite3.Connection, tenant_id: str, order_id: str) -> list[Row]:
    """The order's line items, in insertion order; empty if the order is not in the tenant."""
    return _all(conn, "SELECT i.sku, i.name, i.qty, i.unit_price_cents FROM order_items i "
                "JOIN orders o ON o.order_id = i.order_id "
                "WHERE o.tenant_id = ? AND i.order_id = ? ORDER BY i.item_id",
                tenant_id, order_id)


def order_payments(conn: sqlite3.Connection, tenant_id: str, order_id: str) -> list[Row]:
    """The order's payments, oldest first."""
    return _all(conn, "SELECT payment_id, amount_cents, status, captured_at FROM payments "
                "WHERE tenant_id = ? AND order_id = ? ORDER BY payment_id",
                tenant_id, order_id)


def customer_orders(
    conn: sqlite3.Connection, tenant_id: str, customer_id: str, limit: int
) -> list[Row]:
    """The customer's most recent orders, newest first."""
    return _all(conn, "SELECT order_id, status, total_cents, placed_at FROM orders "
                "WHERE tenant_id = ? AND customer_id = ? "
                "ORDER BY placed_at DESC, order_id DESC LIMIT ?",
                tenant_id, customer_id, limit)


def paid_cents(conn: sqlite3.Connection, tenant_id: str, order_id: str) -> int:
    """Sum of the order's captured payments (0 when none or not in the tenant)."""
    row = conn.execute("SELECT COALESCE(SUM(amount_cents), 0) FROM payments "
                       "WHERE tenant_id = ? AND order_id = ? AND status = 'captured'",
                       (tenant_id, order_id)).fetchone()
    return int(row[0])


def refunded_cents(conn: sqlite3.Connection, tenant_id: str, order_id: str) -> int:
    """Sum of the order's refunds that are not cancelled (requested ones count: money promised)."""
    row = conn.execute("SELECT COALESCE(SUM(amount_cents), 0) FROM refunds "
                       "WHERE tenant_id = ? AND order_id = ? AND status != 'cancelled'",
                       (tenant_id, order_id)).fetchone()
    return int(row[0])


def refundable_balance_cents(conn: sqlite3.Connection, tenant_id: str, order_id: str) -> int:
    """What may still be refunded on the order: paid minus refunded."""
    return paid_cents(conn, tenant_id, order_id) - refunded_cents(conn, tenant_id, order_id)


def ticket_row(conn: sqlite3.Connection, tenant_id: str, ticket_id: str) -> Row | None:
    """The ticket with this id in the tenant."""
    return _one(conn, "SELECT * FROM tickets WHERE tenant_id = ? AND ticket_id = ?",
                tenant_id, ticket_id)


def _tenant_of(conn: sqlite3.Connection, table: str, column: str, value: str) -> str | None:
    # table and column come from the three callers below, never from input.
    row = conn.execute(f"SELECT tenant_id FROM {table} WHERE {column} = ?", (value,)).fetchone()
    return None if row is None else str(row[0])


def order_tenant(conn: sqlite3.Connection, order_id: str) -> str | None:
    """The tenant owning this order id, in any tenant; None if no tenant has it."""
    return _tenant_of(conn, "orders", "order_id", order_id)


def customer_tenant(conn: sqlite3.Connection, customer_id: str) -> str | None:
    """The tenant owning this customer id, in any tenant; None if no tenant has it."""
    return _tenant_of(conn, "customers", "customer_id", customer_id)


def ticket_tenant(conn: sqlite3.Connection, ticket_id: str) -> str | None:
    """The tenant owning this ticket id, in any tenant; None if no tenant has it."""
    return _tenant_of(conn, "tickets", "ticket_id", ticket_id)
