"""Shared fixtures: a temporary data directory and a runner on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from checkpoints.saver import open_checkpointer
from graph.observe import price_fn, recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SIGNOFF_HOME for one test; the CLI and the runner both use it."""
    root = tmp_path / "signoff-home"
    monkeypatch.setenv("SIGNOFF_HOME", str(root))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return root


@pytest.fixture
def runner(home: Path) -> Iterator[Runner]:
    """A runner with traces on, over a freshly seeded support database."""
    r = Runner(Home(home), recorder_factory=recorder_factory(), price=price_fn())
    r.ensure_domain_db(get_workflow("support"), reset=True)
    yield r
    r.close()


@contextmanager
def checkpointer(kind: str, path: Path) -> Iterator[Any]:
    """The checkpointer of a grid cell: "memory" (InMemorySaver) or "sqlite" (at `path`)."""
    if kind == "memory":
        yield InMemorySaver()
    else:
        with open_checkpointer(path) as saver:
            yield saver


def sample(ticket_id: str):  # noqa: ANN201 - SampleTicket
    """The support workflow's sample ticket with this id."""
    return next(t for t in get_workflow("support").sample_tickets() if t.ticket_id == ticket_id)


BACKENDS = ("sqlite", "postgres")
"""The backend grid: every storage-dependent test runs on each (tests/pg.py)."""


@pytest.fixture(params=BACKENDS)
def backend_home(request: pytest.FixtureRequest, home: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    """A Home on each backend of the grid: the SQLite directory, or (when
    SIGNOFF_TEST_DATABASE_URL is set) a PostgreSQL database under a schema prefix of its own,
    upgraded. The CLI sees the same through SIGNOFF_DATABASE_URL and SIGNOFF_DB_SCHEMA_PREFIX."""
    if request.param == "sqlite":
        yield Home(home)
        return
    from tests.pg import pg_schemas

    with pg_schemas() as (url, prefix):
        monkeypatch.setenv("SIGNOFF_DATABASE_URL", url)
        monkeypatch.setenv("SIGNOFF_DB_SCHEMA_PREFIX", prefix)
        pg_home = Home(home, database_url=url, schema_prefix=prefix)
        backend = pg_home.open_backend()
        try:
            backend.upgrade()
        finally:
            backend.close()
        yield pg_home
