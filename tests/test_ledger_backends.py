"""The ledger on each backend: external effects record their intent with the run's tenant
(row-level security covers intents on PostgreSQL), and a SQLite ledger written by an earlier
version gains the tenant columns when it is opened."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from graph.runner import Home
from tests.domain_grid import domain_connection, domain_rows
from tools.ledger import commit_external, ensure_ledger


class Refunded(BaseModel):
    external_id: str


class FakeRefund:
    """An external system that honours the key: performs once, then knows the record."""

    system = "payments"

    def __init__(self) -> None:
        self.request = {"amount_cents": 500}
        self.performed = 0
        self.record: dict[str, Any] | None = None

    def perform(self, point: Callable[[str], None]) -> dict[str, Any]:
        self.performed += 1
        self.record = {"id": "re_1", "amount_cents": 500}
        return self.record

    def lookup(self) -> dict[str, Any] | None:
        return self.record

    def apply(self, record: dict[str, Any]) -> BaseModel:
        return Refunded(external_id=str(record["id"]))


def external(conn: Any, call: FakeRefund) -> Any:
    return commit_external(conn, key="ext-1", run_id="run-ext", step=1, tool="refund_api",
                           args={"amount_cents": 500}, call=call, tenant_id="acme",
                           customer_id="CUS-0001")


def test_an_external_effect_is_made_once_and_its_intent_carries_the_tenant(
        domain_home: Home) -> None:
    call = FakeRefund()
    with domain_connection(domain_home, "support", "acme") as conn:
        first, again = external(conn, call), external(conn, call)
    assert (first.replayed, again.replayed, call.performed) == (False, True, 1)
    assert first.result == {"external_id": "re_1"}
    assert domain_rows(domain_home, "support", "SELECT status, external_id, tenant_id FROM"
                       " external_intents WHERE key = 'ext-1'") == [("confirmed", "re_1", "acme")]
    assert domain_rows(domain_home, "support", "SELECT tenant_id, customer_id FROM"
                       " mutation_ledger WHERE key = 'ext-1'") == [("acme", "CUS-0001")]


def test_an_old_sqlite_ledger_gains_the_tenant_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE mutation_ledger (key TEXT PRIMARY KEY, run_id TEXT NOT NULL,"
                 " step INTEGER NOT NULL, tool TEXT NOT NULL, args TEXT NOT NULL, result TEXT"
                 " NOT NULL, committed_at REAL NOT NULL)")
    conn.execute("INSERT INTO mutation_ledger VALUES ('old', 'run-0', 1, 't', '{}', '{}', 0)")
    conn.execute("CREATE TABLE external_intents (key TEXT PRIMARY KEY, run_id TEXT NOT NULL,"
                 " step INTEGER NOT NULL, tool TEXT NOT NULL, system TEXT NOT NULL, request"
                 " TEXT NOT NULL, status TEXT NOT NULL, external_id TEXT, created_at REAL NOT"
                 " NULL, confirmed_at REAL)")
    conn.commit()
    ensure_ledger(conn)
    assert external(conn, FakeRefund()).replayed is False
    assert conn.execute("SELECT tenant_id FROM external_intents").fetchall() == [("acme",)]
    assert conn.execute("SELECT key, tenant_id FROM mutation_ledger ORDER BY key").fetchall() \
        == [("ext-1", "acme"), ("old", None)]
    conn.close()
