"""Helpers for the service tests: an app on a test's data directory, its accounts, and the
app served on a loopback port (for the CLI over HTTP and the browser)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from checkpoints.accounts import AccountStore
from checkpoints.backend import SqliteBackend
from graph.observe import price_fn, recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from service.app import create_app
from service.core import ServiceSettings

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


def build_app(root: Path, clock: Clock | None = None) -> FastAPI:
    home = Home(root)
    make_runner(home).close()  # the sample database, before the app opens it
    settings = ServiceSettings(home=home, make_runner=make_runner,
                               **({"clock": clock} if clock else {}))
    return create_app(settings)


def tokens(root: Path, clock: Clock | None = None) -> dict[str, str]:
    """A user and a token for each of USERS, keyed like USERS."""
    root.mkdir(parents=True, exist_ok=True)
    accounts = AccountStore.open(SqliteBackend(root), **({"clock": clock} if clock else {}))
    try:
        out = {}
        for key, (email, role, tenant) in USERS.items():
            accounts.add_user(email, role=role, tenant_id=tenant)
            out[key] = accounts.create_token(email)[1]
        return out
    finally:
        accounts.close()


def refunds(root: Path, order_id: str = "ORD-10002") -> int:
    """Refunds on the order of TKT-1002 (the seed holds none on it)."""
    with sqlite3.connect(root / "support.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM refunds WHERE order_id = ?",
                                (order_id,)).fetchone()[0])


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
