"""Access to an existing trace store, for search, report, purge and export."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from observability.db import TRACES, Store, StoreSource, backend_of, open_store, store_errors


@contextmanager
def open_traces(source: StoreSource) -> Iterator[Store]:
    """The trace store of `source`, for a few reads (or one purge); a missing SQLite file or
    an unreadable database raises StoreError."""
    with backend_of(source) as backend:
        store = open_store(backend, TRACES, create=False)
        try:
            with store_errors(f"cannot read {store.where}"):
                yield store
        finally:
            store.close()
