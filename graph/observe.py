"""Wiring between the runner and the observability package (traces, audit log, cost).

SIGNOFF_PRICES may name a TOML price table that overrides the defaults; SIGNOFF_TRACES=off
turns trace recording off (the release gate reports it).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from graph.context import Workflow
from graph.errors import DamagedData, SignoffError
from observability import PriceTable, Recorder, StoreError


def price_table() -> PriceTable:
    path = os.environ.get("SIGNOFF_PRICES")
    if not path:
        return PriceTable.default()
    try:
        return PriceTable.from_toml(Path(path))
    except (OSError, ValueError) as exc:
        raise SignoffError(f"cannot load price table {path}: {exc}") from None


def recorder_factory() -> Callable[..., Recorder] | None:
    if os.environ.get("SIGNOFF_TRACES", "on").lower() in {"off", "0", "false"}:
        return None
    prices = price_table()

    def factory(stores: object, workflow: Workflow) -> Recorder:
        # The runner's own backend (its SQLite files or its PostgreSQL pool), or a Home; a bare
        # path is a SQLite directory.
        source = Path(stores) if isinstance(stores, str | os.PathLike) else stores
        try:
            return Recorder(source, prices=prices,  # type: ignore[arg-type]
                            pii_fields=workflow.pii_fields)
        except (StoreError, sqlite3.DatabaseError) as exc:
            raise DamagedData(f"cannot open the trace store: {exc}") from None

    return factory


def price_fn() -> Callable[[str, int, int], float | None]:
    """Cost of one model call for the run's money budget; None for a model the price table
    does not know, which the gate's money budget then refuses (fail closed)."""
    return price_table().cost
