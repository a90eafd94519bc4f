"""Reads of the access database, every one filtered by tenant."""

from __future__ import annotations

import sqlite3
from typing import Any


def _one(conn: sqlite3.Connection, sql: str, *params: Any) -> dict[str, Any] | None:
    row = conn.execute(sql, params).fetchone()
    return dict(row) if row is not None else None


def employee_by_email(conn: sqlite3.Connection, tenant_id: str,
                      email: str) -> dict[str, Any] | None:
    return _one(conn, "SELECT * FROM employees WHERE tenant_id = ? AND lower(email) = lower(?)",
                tenant_id, email)


def employee(conn: sqlite3.Connection, tenant_id: str, employee_id: str) -> dict[str, Any] | None:
    return _one(conn, "SELECT * FROM employees WHERE tenant_id = ? AND employee_id = ?",
                tenant_id, employee_id)


def system(conn: sqlite3.Connection, tenant_id: str, system_id: str) -> dict[str, Any] | None:
    return _one(conn, "SELECT * FROM systems WHERE tenant_id = ? AND system_id = ?",
                tenant_id, system_id)


def request(conn: sqlite3.Connection, tenant_id: str, request_id: str) -> dict[str, Any] | None:
    return _one(conn, "SELECT * FROM requests WHERE tenant_id = ? AND request_id = ?",
                tenant_id, request_id)


def live_grants(conn: sqlite3.Connection, tenant_id: str, employee_id: str, *,
                system_id: str | None = None, level: str | None = None) -> list[dict[str, Any]]:
    """Grants not revoked, oldest first; optionally only on one system and level."""
    sql = ("SELECT grant_id, system_id, level, granted_at FROM grants WHERE tenant_id = ?"
           " AND employee_id = ? AND revoked_at IS NULL")
    params: list[Any] = [tenant_id, employee_id]
    if system_id is not None:
        sql += " AND system_id = ?"
        params.append(system_id)
    if level is not None:
        sql += " AND level = ?"
        params.append(level)
    return [dict(r) for r in conn.execute(sql + " ORDER BY grant_id", params)]
