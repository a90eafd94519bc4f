"""Reading a workflow's domain data on either backend of the grid (tests/conftest.py
`backend_home`): the SQLite file, or the PostgreSQL store as the owner role (which the test
server's superuser is: row-level security does not hide rows from it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from checkpoints.domain import for_tenant
from graph.runner import Home, domain_store
from graph.workflows import get_workflow


@contextmanager
def domain_connection(home: Home, workflow: str, tenant_id: str | None = None
                      ) -> Iterator[Any]:
    """A connection to `workflow`'s data, bound to `tenant_id` when given (as a run's is)."""
    if not home.database_url:
        conn = get_workflow(workflow).open_db(home.domain_db(get_workflow(workflow)))
        try:
            yield conn
        finally:
            conn.close()
        return
    backend = home.open_backend()
    conn = backend.connect(domain_store(get_workflow(workflow)))
    try:
        yield for_tenant(conn, tenant_id) if tenant_id else conn
    finally:
        conn.close()
        backend.close()


def domain_rows(home: Home, workflow: str, sql: str, params: Sequence[Any] = ()
                ) -> list[tuple[Any, ...]]:
    """The rows `sql` (with ? placeholders) returns from `workflow`'s data, every tenant's."""
    if not home.database_url:
        with sqlite3.connect(home.domain_db(get_workflow(workflow))) as conn:
            return [tuple(r) for r in conn.execute(sql, params)]
    with domain_connection(home, workflow) as conn:
        return [tuple(r) for r in conn.execute(sql, params)]


def store_rows(home: Home, store: str, sql: str, params: Sequence[Any] = ()
               ) -> list[tuple[Any, ...]]:
    """The rows `sql` returns from one of signoff's own stores (control, traces, audit) on
    `home`'s backend."""
    backend = home.open_backend()
    try:
        conn = backend.connect(store)
        try:
            return [tuple(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()
    finally:
        backend.close()
