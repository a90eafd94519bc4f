"""Raw SQL on a Home's stores, whichever backend holds them, for tests that tamper with or
inspect a store behind the library's back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graph.runner import Home


def execute(home: Home, store: str, statement: str, params: Sequence[Any] = ()
            ) -> list[tuple[Any, ...]]:
    """Run one statement on `store` (autocommit); its rows, if it returns any."""
    backend = home.open_backend()
    try:
        conn = backend.connect(store)
        try:
            cursor = conn.execute(statement, params)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
        finally:
            conn.close()
    finally:
        backend.close()
