"""Putting runs on the queue, and the queue's schema (Procrastinate's, applied and upgraded).

Procrastinate leaves schema migrations to its users; `upgrade_schema` applies the schema of
the installed version where there is none and, where signoff applied an older one, the
migration scripts Procrastinate ships between the two, in one transaction under a lock.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as pq_errors
from procrastinate.schema import SchemaManager

from checkpoints.backend import redact_url
from graph.errors import SignoffError, StoreUnavailable

DRIVE_TASK = "signoff.drive_run"
SWEEP_TASK = "signoff.sweep"
PURGE_TASK = "signoff.purge"
VERSION_TABLE = "signoff_queue_schema"
_MIGRATION = re.compile(r"(\d{2})\.(\d{2})\.(\d{2})_(\d{2})_.*\.sql")
_UPGRADE_LOCK = 0x5160FF  # pg_advisory_xact_lock key: two upgrades never interleave


class QueueNotReady(SignoffError):
    """The queue's database has no (or an older) Procrastinate schema."""


def run_lock(run_id: str) -> str:
    """The queueing lock of a run's job: at most one job per run waits in the queue."""
    return f"run:{run_id}"


def enqueue_run(app: procrastinate.App, run_id: str) -> bool:
    """Put a job that drives `run_id` on the queue; False when one already waits for it."""
    try:
        app.configure_task(DRIVE_TASK, queueing_lock=run_lock(run_id)).defer(run_id=run_id)
    except pq_errors.AlreadyEnqueued:
        return False
    return True


async def enqueue_run_async(app: procrastinate.App, run_id: str) -> bool:
    """`enqueue_run` from a coroutine (a periodic task)."""
    try:
        await app.configure_task(DRIVE_TASK, queueing_lock=run_lock(run_id)).defer_async(
            run_id=run_id)
    except pq_errors.AlreadyEnqueued:
        return False
    return True


def installed_version() -> tuple[int, int, int]:
    """The installed Procrastinate's version, as (major, minor, patch)."""
    parts = re.findall(r"\d+", procrastinate.__version__)[:3]
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def migrations_between(old: tuple[int, int, int],
                       new: tuple[int, int, int]) -> list[Path]:
    """Procrastinate's migration scripts past `old`, up to `new`, in the order to apply."""
    found = []
    for path in Path(SchemaManager.get_migrations_path()).glob("*.sql"):
        match = _MIGRATION.fullmatch(path.name)
        if match is None:
            continue
        version = (int(match[1]), int(match[2]), int(match[3]))
        if old < version <= new:
            found.append((version, int(match[4]), path))
    return [path for *_, path in sorted(found)]


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot reach the queue database {redact_url(url)}: "
                          f"{_first_line(exc)}") from None


def schema_version(url: str) -> tuple[int, int, int] | None:
    """The Procrastinate version whose schema signoff applied to the queue; None for none."""
    with _connect(url) as conn:
        return _recorded(conn)


def _recorded(conn: psycopg.Connection[Any]) -> tuple[int, int, int] | None:
    if conn.execute("SELECT to_regclass(%s)", (VERSION_TABLE,)).fetchone() == (None,):
        return None
    row = conn.execute(f"SELECT major, minor, patch FROM {VERSION_TABLE}").fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else None


def require_schema(url: str) -> None:
    """Raise QueueNotReady unless the queue has the installed Procrastinate's schema."""
    recorded, installed = schema_version(url), installed_version()
    if recorded is None:
        raise QueueNotReady(f"the queue {redact_url(url)} has no schema yet: run "
                            "`signoff queue upgrade` once")
    if recorded < installed and migrations_between(recorded, installed):
        raise QueueNotReady(f"the queue {redact_url(url)} has Procrastinate "
                            f"{_dotted(recorded)}'s schema and this is "
                            f"{_dotted(installed)}: run `signoff queue upgrade`")


def upgrade_schema(url: str) -> str:
    """Bring the queue's schema to the installed Procrastinate's; idempotent. One line
    saying what it did."""
    installed = installed_version()
    with _connect(url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_UPGRADE_LOCK,))
        conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (id int PRIMARY KEY"
                     " CHECK (id = 1), major int NOT NULL, minor int NOT NULL,"
                     " patch int NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        recorded = _recorded(conn)
        if recorded is None:
            if conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone() != (None,):
                raise QueueNotReady(
                    "the queue database already holds a Procrastinate schema signoff did not "
                    "apply: upgrade it with Procrastinate's migrations, then record its "
                    f"version in {VERSION_TABLE}")
            # A script with no parameters runs as it is, all its statements at once.
            conn.execute(SchemaManager.get_schema())
            done = f"applied Procrastinate {_dotted(installed)}'s queue schema"
        elif recorded >= installed:
            return f"the queue schema is up to date (Procrastinate {_dotted(recorded)})"
        else:
            scripts = migrations_between(recorded, installed)
            for script in scripts:
                conn.execute(script.read_text(encoding="utf-8"))  # type: ignore[arg-type]
            done = (f"upgraded the queue schema from Procrastinate {_dotted(recorded)} to "
                    f"{_dotted(installed)} ({len(scripts)} migration(s))")
        conn.execute(f"INSERT INTO {VERSION_TABLE} (id, major, minor, patch) VALUES"
                     " (1, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET major = excluded.major,"
                     " minor = excluded.minor, patch = excluded.patch, applied_at = now()",
                     installed)
    return done


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
