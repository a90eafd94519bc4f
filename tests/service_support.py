"""Helpers for the service tests: an app on a test's stores (a SQLite data directory, or a Home
of the backend grid), its accounts, and the app served on a loopback port (for the CLI over
HTTP and the browser)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from checkpoints.accounts import AccountStore
from checkpoints.domain import DEFAULT_WORKER_ROLE
from graph.observe import price_fn, recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from service.app import create_app
from service.core import ServiceSettings
from tests.domain_grid import domain_rows
from tests.pg import as_role

USERS = {
    "agent": ("agent@acme.example", "agent", "acme"),
    "lead": ("lead@acme.example", "support_lead", "acme"),
    "finance": ("finance@acme.example", "finance", "acme"),
    "globex": ("lead@globex.example", "support_lead", "globex"),
    "operator": ("ops@signoff.example", "operator", "*"),
}


class Clock:
    """A settable clock shared by the accounts store (token expiry) and the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_runner(home: Home) -> Runner:
    runner = Runner(home, recorder_factory=recorder_factory(), price=price_fn())
    runner.ensure_domain_db(get_workflow("support"))
    return runner


def stores_of(where: Home | Path) -> Home:
    """A test's stores: a Home (of the backend grid), or a SQLite data directory."""
    return where if isinstance(where, Home) else Home(where)


def as_deployed(home: Home) -> Home:
    """`home` as a deployment's service reaches it: on PostgreSQL connected as the worker role
    (no DDL, no row-level-security bypass); a Home of its own either way."""
    if not home.database_url:
        return dataclasses.replace(home)
    return dataclasses.replace(home, database_url=as_role(home.database_url,
                                                          DEFAULT_WORKER_ROLE))


def build_app(where: Home | Path, clock: Clock | None = None, *,
              serve_as: Home | None = None) -> FastAPI:
    """The app on `where`'s stores (SQLite or PostgreSQL), the sample data installed there
    first; `serve_as` is the Home the app itself opens (`where`'s when not given)."""
    home = stores_of(where)
    make_runner(home).close()  # the sample database, before the app opens it
    settings = ServiceSettings(home=serve_as or home, make_runner=make_runner,
                               **({"clock": clock} if clock else {}))
    return create_app(settings)


@contextmanager
def accounts_of(where: Home | Path, clock: Clock | None = None) -> Iterator[AccountStore]:
    """The accounts in `where`'s control store, the one the service reads them from."""
    home = stores_of(where)
    home.root.mkdir(parents=True, exist_ok=True)
    with closing(home.open_backend()) as backend, closing(AccountStore.open(
            backend, **({"clock": clock} if clock else {}))) as accounts:
        yield accounts


def tokens(where: Home | Path, clock: Clock | None = None) -> dict[str, str]:
    """A user and a token for each of USERS, keyed like USERS."""
    with accounts_of(where, clock) as accounts:
        out = {}
        for key, (email, role, tenant) in USERS.items():
            accounts.add_user(email, role=role, tenant_id=tenant)
            out[key] = accounts.create_token(email)[1]
        return out


def refunds(where: Home | Path, order_id: str = "ORD-10002") -> int:
    """Refunds on the order of TKT-1002 (the seed holds none on it), on `where`'s backend."""
    rows = domain_rows(stores_of(where), "support",
                       "SELECT COUNT(*) FROM refunds WHERE order_id = ?", (order_id,))
    return int(rows[0][0])


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """The app on a free loopback port for the block; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the service did not start")
        threading.Event().wait(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
