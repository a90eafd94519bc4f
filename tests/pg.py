"""PostgreSQL for the backend grid: SIGNOFF_TEST_DATABASE_URL names the server (.ci/run sets
it); without it the Postgres cells skip with one line naming the variable. Each test gets its
own schema prefix, so tests (and parallel checkouts) never see each other's rows."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

TEST_URL_ENV = "SIGNOFF_TEST_DATABASE_URL"
SKIP_REASON = f"PostgreSQL tests need {TEST_URL_ENV} (e.g. postgresql://postgres@127.0.0.1/test)"


def test_database_url() -> str:
    """The test server's URL, or skip the calling test naming the variable."""
    url = os.environ.get(TEST_URL_ENV, "")
    if not url:
        pytest.skip(SKIP_REASON)
    return url


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}_"


def drop_schemas(url: str, prefix: str) -> None:
    """Drop every schema a test made under `prefix`."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix + "%",))]
        for name in names:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@contextmanager
def pg_schemas() -> Iterator[tuple[str, str]]:
    """(url, prefix) for one test; its schemas are dropped afterwards."""
    url = test_database_url()
    prefix = new_prefix()
    try:
        yield url, prefix
    finally:
        drop_schemas(url, prefix)


def as_role(url: str, role: str) -> str:
    """`url` with `role` as its user (the test server trusts local connections)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return urlunsplit(parts._replace(netloc=f"{role}@{host}" +
                                     (f":{parts.port}" if parts.port else "")))
