"""Helpers every benchmark shares: timing, percentiles, the sample homes, table rendering."""

from __future__ import annotations

import math
import sqlite3
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REQUESTER = "agent@acme.example"
APPROVERS = {"acme": "lead@acme.example", "globex": "lead@globex.example"}
OUT = Path(__file__).resolve().parent / "out"


def approver_for(tenant_id: str) -> str:
    return APPROVERS.get(tenant_id.split("-")[0].lower(), "lead@acme.example")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    data = sorted(values)
    if not data:
        return math.nan
    k = (len(data) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


class Stopwatch:
    """`with Stopwatch() as sw: ...; sw.seconds`"""

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def supersteps(checkpoints_db: Path, thread_id: str) -> int:
    """Supersteps a thread ran: the checkpoints LangGraph's loop wrote for it.

    Every variant uses the same SqliteSaver, so this counts the same thing for all of them
    (each invocation's first superstep applies its input).
    """
    with sqlite3.connect(checkpoints_db) as conn:
        rows = conn.execute("SELECT metadata FROM checkpoints WHERE thread_id = ?",
                            (thread_id,)).fetchall()
    return sum(1 for (meta,) in rows if b'"source": "loop"' in _bytes(meta))


def checkpoint_bytes(checkpoints_db: Path, thread_id: str) -> int:
    """Bytes the saver stored for one thread: checkpoints, metadata and pending writes."""
    with sqlite3.connect(checkpoints_db) as conn:
        a = conn.execute("SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0)"
                         " FROM checkpoints WHERE thread_id = ?", (thread_id,)).fetchone()[0]
        b = conn.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes"
                         " WHERE thread_id = ?", (thread_id,)).fetchone()[0]
    return int(a) + int(b)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(doc: Path, heading: str, lines: Sequence[str]) -> None:
    """Put a section (its first line `heading`) into the doc in place of an older one, or at
    its end (where bench/run.py's render puts the sections measured apart); a doc that does
    not exist yet is created."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    block = "\n".join(lines) + "\n"
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + block + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block if text else block
    doc.write_text(text, encoding="utf-8")
