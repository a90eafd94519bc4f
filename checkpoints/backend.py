"""The storage seam: one URL picks where every durable store lives.

Unset (the default), a SQLite data directory: one file per store, nothing to install.
`postgresql://...`, one PostgreSQL database: a psycopg 3 pool hands every store its
connection and LangGraph's PostgresSaver keeps the checkpoints. Stores ask the backend for a
connection by store name and keep one body of SQL (checkpoints.sql); their schemas are
versioned here and brought up to date by `upgrade()` (`signoff db upgrade`).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from checkpoints.sql import Connection, PgConnection
from graph.errors import StoreUnavailable

if TYPE_CHECKING:  # LangGraph loads when a checkpointer opens: the CLI's --help needs none
    from langgraph.checkpoint.base import BaseCheckpointSaver

DATABASE_URL_ENV = "SIGNOFF_DATABASE_URL"
POOL_SIZE_ENV = "SIGNOFF_DB_POOL_SIZE"
SCHEMA_PREFIX_ENV = "SIGNOFF_DB_SCHEMA_PREFIX"
DEFAULT_SCHEMA_PREFIX = "signoff_"
DEFAULT_POOL_SIZE = 10
Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Schema:
    """A store's schema as numbered migrations per dialect; version N is migrations[:N]."""

    store: str
    """The store's name (the SQLite file stem, the Postgres table prefix's owner)."""
    migrations: dict[Dialect, Sequence[str]]
    """Each migration is one SQL script; never edit a shipped one, append a new one."""

    def version(self, dialect: Dialect) -> int:
        return len(self.migrations[dialect])


SCHEMAS: dict[str, Schema] = {}
"""Every store's schema, registered by the module that owns the store."""


def register_schema(schema: Schema) -> Schema:
    SCHEMAS[schema.store] = schema
    return schema


STORE_MODULES = ("checkpoints.control_schema", "observability.schema", "observability.audit")
"""The modules that register a store's schema: `upgrade` and `status` import them all, so a
process that has not touched a store yet still upgrades it."""


def load_schemas() -> dict[str, Schema]:
    """Every store's schema (importing STORE_MODULES)."""
    import importlib

    for module in STORE_MODULES:
        importlib.import_module(module)
    return SCHEMAS


VERSIONS_DDL = ("CREATE TABLE IF NOT EXISTS signoff_schema ("
                " store TEXT PRIMARY KEY, version INTEGER NOT NULL)")


@dataclass(frozen=True)
class StoreStatus:
    """Where one store's schema stands (`signoff db status`)."""

    store: str
    have: int
    """The version the database holds (0: not created yet)."""
    want: int
    """The version this signoff needs."""
    where: str
    """A file path, or a redacted URL and the Postgres schema."""

    @property
    def current(self) -> bool:
        return self.have == self.want


def redact_url(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Backend(Protocol):
    """Where the stores live; built once per process by `open_backend`."""

    dialect: Dialect

    def connect(self, store: str) -> Connection:
        """A connection for `store` (autocommit outside explicit transactions)."""
        ...

    def checkpointer(self, *, saver_factory: Callable[..., Any] | None = None
                     ) -> AbstractContextManager[BaseCheckpointSaver[Any]]:
        """The LangGraph saver for run checkpoints, set up, closed on exit."""
        ...

    def upgrade(self) -> list[str]:
        """Create or upgrade every registered schema; the `store vN` steps applied."""
        ...

    def status(self) -> list[StoreStatus]:
        """Each store's schema version against the one this signoff needs (writes nothing)."""
        ...

    def open_existing(self, store: str) -> Connection | None:
        """A connection that reads `store` as it is, creating and upgrading nothing (so a
        read-only data directory can be read); None when the store does not exist yet."""
        ...

    def describe(self) -> str:
        """Where the data is, for messages (no secrets)."""
        ...

    def where(self, store: str) -> str:
        """Where one store is, for messages: its file, or the database and schema."""
        ...

    def close(self) -> None: ...


def apply_migrations(conn: Any, dialect: Dialect, *, begin: Callable[[], object],
                     commit: Callable[[], object], stores: Sequence[str] | None = None
                     ) -> list[str]:
    """Bring each schema in `stores` (all when None) to its latest version on `conn`."""
    applied: list[str] = []
    conn.execute(VERSIONS_DDL)
    for name in stores if stores is not None else sorted(SCHEMAS):
        schema = SCHEMAS[name]
        row = conn.execute("SELECT version FROM signoff_schema WHERE store = ?",
                           (name,)).fetchone()
        have = int(row[0]) if row else 0
        for number, script in enumerate(schema.migrations[dialect][have:], start=have + 1):
            begin()
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO signoff_schema (store, version) VALUES (?, ?)"
                         " ON CONFLICT (store) DO UPDATE SET version = excluded.version",
                         (name, number))
            commit()
            applied.append(f"{name} v{number}")
    return applied


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";\n") if part.strip()]


def _upgrade_sqlite(conn: sqlite3.Connection, store: str) -> list[str]:
    """SQLite stores upgrade themselves on open: an embedded default with nothing to run."""
    return apply_migrations(conn, "sqlite", begin=lambda: conn.execute("BEGIN IMMEDIATE"),
                            commit=lambda: conn.execute("COMMIT"), stores=[store])


@dataclass
class SqliteBackend:
    """Every store in its own file under `root` (the default; SIGNOFF_HOME)."""

    root: Path
    dialect: Dialect = "sqlite"

    def path(self, store: str) -> Path:
        return self.root / f"{store}.db"

    def connect(self, store: str) -> Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(store)
        try:
            conn = sqlite3.connect(str(path), timeout=10, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            if store in SCHEMAS:
                _upgrade_sqlite(conn, store)
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(f"{path} is not a usable signoff {store} database: {exc}"
                                   ) from None
        return conn

    def checkpointer(self, *, saver_factory: Callable[..., Any] | None = None
                     ) -> AbstractContextManager[BaseCheckpointSaver[Any]]:
        from checkpoints.saver import open_checkpointer

        if saver_factory is None:
            return open_checkpointer(self.root / "checkpoints.db")
        return open_checkpointer(self.root / "checkpoints.db", saver_factory=saver_factory)

    def upgrade(self) -> list[str]:
        applied: list[str] = []
        self.root.mkdir(parents=True, exist_ok=True)
        for name in sorted(load_schemas()):
            try:
                conn = sqlite3.connect(str(self.path(name)), timeout=10, isolation_level=None)
                try:
                    applied += _upgrade_sqlite(conn, name)
                finally:
                    conn.close()
            except sqlite3.DatabaseError as exc:
                raise StoreUnavailable(f"{self.path(name)} is not a usable signoff {name} "
                                       f"database: {exc}") from None
        with self.checkpointer():
            pass  # SqliteSaver.setup() creates or upgrades its own tables
        return applied

    def status(self) -> list[StoreStatus]:
        return _schema_statuses(self)

    def open_existing(self, store: str) -> Connection | None:
        path = self.path(store)
        if not path.is_file():
            return None
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10,
                                   isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(f"{path} is not a usable signoff {store} database: {exc}"
                                   ) from None
        return conn

    def describe(self) -> str:
        return str(self.root)

    def where(self, store: str) -> str:
        return str(self.path(store))

    def close(self) -> None:
        pass


@dataclass
class PostgresBackend:
    """Every store in one PostgreSQL database, each in its own Postgres schema
    (`<prefix><store>`: the control store's `runs` and the trace store's `runs` never meet),
    connections from one psycopg pool; the checkpoints in `<prefix>checkpoints`."""

    url: str
    pool_size: int = DEFAULT_POOL_SIZE
    """The most connections this process holds (SIGNOFF_DB_POOL_SIZE)."""
    schema_prefix: str = DEFAULT_SCHEMA_PREFIX
    """Tests give each test its own prefix; a deployment keeps the default."""
    dialect: Dialect = "postgres"
    _pool: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.schema_prefix.replace("_", "a").isalnum() or not self.schema_prefix.isascii():
            raise StoreUnavailable(f"{SCHEMA_PREFIX_ENV} must be letters, digits and _, not "
                                   f"{self.schema_prefix!r}")

    def schema(self, store: str) -> str:
        """The Postgres schema that holds `store`'s tables."""
        return f"{self.schema_prefix}{store}".lower()

    @property
    def pool(self) -> Any:
        with self._lock:
            if self._pool is None:
                self._pool = _open_pool(self.url, self.pool_size)
            return self._pool

    def raw_connection(self, store: str) -> AbstractContextManager[Any]:
        """A pooled psycopg connection whose search_path is `store`'s schema, returned to the
        pool (search_path reset) on exit; for code that speaks Postgres itself."""
        return self._raw(store)

    @contextmanager
    def _raw(self, store: str) -> Iterator[Any]:
        with self.pool.connection() as raw:
            raw.execute(f'SET search_path TO "{self.schema(store)}"')
            try:
                yield raw
            finally:
                raw.execute("RESET search_path")

    def connect(self, store: str) -> Connection:
        conn = self._connection(store)
        if store in SCHEMAS:
            self._check_version(conn, store)
        return conn

    def _connection(self, store: str) -> PgConnection:
        pool = self.pool
        try:
            raw = pool.getconn()
        except Exception as exc:  # psycopg_pool.PoolTimeout and friends
            raise StoreUnavailable(f"cannot reach {redact_url(self.url)}: {_first(exc)}"
                                   ) from None

        def release(connection: Any) -> None:
            try:
                connection.execute("RESET search_path")
            finally:
                pool.putconn(connection)

        raw.execute(f'SET search_path TO "{self.schema(store)}"')
        return PgConnection(raw, release=release)

    def _check_version(self, conn: PgConnection, store: str) -> None:
        want = SCHEMAS[store].version("postgres")
        try:
            row = conn.execute("SELECT version FROM signoff_schema WHERE store = ?",
                               (store,)).fetchone()
        except Exception:
            row = None
        have = int(row[0]) if row else 0
        if have != want:
            conn.close()
            raise StoreUnavailable(
                f"{redact_url(self.url)} holds the {store} schema at version {have}, this "
                f"signoff needs {want}: run `signoff db upgrade`")

    @contextmanager
    def _checkpointer(self, saver_factory: Callable[..., Any] | None) -> Iterator[Any]:
        # The saver takes a connection for its life (it serialises its own use with a lock);
        # one per checkpointer, so many threads driving runs do not queue on one connection.
        with self._raw("checkpoints") as raw:
            yield (saver_factory or compact_postgres_saver())(raw)

    def checkpointer(self, *, saver_factory: Callable[..., Any] | None = None
                     ) -> AbstractContextManager[BaseCheckpointSaver[Any]]:
        return self._checkpointer(saver_factory)

    def upgrade(self) -> list[str]:
        from langgraph.checkpoint.postgres import PostgresSaver

        applied: list[str] = []
        with self.pool.connection() as raw:
            # One upgrader at a time: two `db upgrade` runs must not both apply v2.
            _take_upgrade_lock(raw, self.schema_prefix)
            try:
                for store in [*sorted(load_schemas()), "checkpoints"]:
                    raw.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema(store)}"')
                    raw.execute(f'SET search_path TO "{self.schema(store)}"')
                    if store == "checkpoints":
                        had = _saver_version(raw)
                        PostgresSaver(raw).setup()  # its migrations apply as one batch
                        if _saver_version(raw) > had:
                            applied.append(f"checkpoints v{_saver_version(raw)}")
                        continue
                    conn = PgConnection(raw)
                    applied += apply_migrations(conn, "postgres", begin=conn.begin,
                                                commit=conn.commit, stores=[store])
                raw.execute("RESET search_path")
                from checkpoints.domain import grant_worker_everywhere

                # Last, so it covers every store: the role workers connect as (no DDL, no RLS
                # bypass) may read and write rows in each of them.
                grant_worker_everywhere(raw, self.schema_prefix)
            finally:
                raw.execute("RESET search_path")
                raw.execute("SELECT pg_advisory_unlock(hashtext(%s))",
                            (f"signoff_schema:{self.schema_prefix}",))
        return applied

    def status(self) -> list[StoreStatus]:
        from langgraph.checkpoint.postgres import PostgresSaver

        found = _schema_statuses(self)
        with self._raw("checkpoints") as raw:
            have = _saver_version(raw)
        found.append(StoreStatus("checkpoints", have, len(PostgresSaver.MIGRATIONS),
                                 self.where("checkpoints")))
        return found

    def open_existing(self, store: str) -> Connection | None:
        conn = self._connection(store)
        row = conn.execute("SELECT to_regclass('signoff_schema') AS t").fetchone()
        if row["t"] is None:
            conn.close()
            return None
        return conn

    def describe(self) -> str:
        return redact_url(self.url)

    def where(self, store: str) -> str:
        return f"{self.describe()} schema {self.schema(store)}"

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def _schema_statuses(backend: Backend) -> list[StoreStatus]:
    """Where each registered store's schema stands on `backend`, read without writing."""
    found = []
    for name in sorted(load_schemas()):
        conn = backend.open_existing(name)
        try:
            have = _version_of(conn, name) if conn is not None else 0
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(f"{backend.where(name)} is not a usable signoff {name} "
                                   f"database: {exc}") from None
        finally:
            if conn is not None:
                conn.close()
        found.append(StoreStatus(name, have, SCHEMAS[name].version(backend.dialect),
                                 backend.where(name)))
    return found


def require_upgraded(backend: Backend) -> None:
    """Refuse (StoreUnavailable, one line) a backend holding any store whose schema is not the
    one this signoff needs, for a process that will open them all later (the service). SQLite
    stores upgrade themselves when opened, so there it passes."""
    if backend.dialect == "sqlite":
        return
    behind = [f"{s.store} v{s.have} (needs v{s.want})" for s in backend.status() if not s.current]
    if behind:
        raise StoreUnavailable(f"{backend.describe()} holds stores this signoff cannot use: "
                               f"{', '.join(behind)}: run `signoff db upgrade`")


def _version_of(conn: Connection, store: str) -> int:
    """The version `store`'s schema is at on `conn` (0 before any)."""
    try:
        row = conn.execute("SELECT version FROM signoff_schema WHERE store = ?",
                           (store,)).fetchone()
    except sqlite3.OperationalError:  # a file from before versions were kept
        return 0
    return int(row[0]) if row else 0


def _take_upgrade_lock(raw: Any, prefix: str) -> None:
    """Take the advisory lock of the upgraders of the stores under `prefix`, polling: a
    session blocked in pg_advisory_lock sits in an open transaction, and PostgresSaver's
    CREATE INDEX CONCURRENTLY, run by the holder, waits for every open transaction to end (a
    deadlock the server breaks by failing one)."""

    while not raw.execute("SELECT pg_try_advisory_lock(hashtext(%s)) AS got",
                          (f"signoff_schema:{prefix}",)).fetchone()["got"]:
        time.sleep(0.05)


def _saver_version(raw: Any) -> int:
    """PostgresSaver's schema version in the current schema: it numbers its migrations from
    0 in checkpoint_migrations; counted here as versions 1..N (0: not set up)."""
    row = raw.execute("SELECT to_regclass('checkpoint_migrations') AS t").fetchone()
    if row["t"] is None:
        return 0
    return int(raw.execute("SELECT coalesce(max(v) + 1, 0) AS v FROM checkpoint_migrations"
                           ).fetchone()["v"])



@functools.cache
def compact_postgres_saver() -> type[Any]:
    """PostgresSaver with integer channel versions (checkpoints.saver.IntegerVersions)."""
    from langgraph.checkpoint.postgres import PostgresSaver

    from checkpoints.saver import IntegerVersions

    return type("CompactPostgresSaver", (IntegerVersions, PostgresSaver), {})


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _open_pool(url: str, size: int) -> Any:
    try:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool
    except ImportError:
        raise StoreUnavailable(f"{DATABASE_URL_ENV} names PostgreSQL but psycopg is not "
                               "installed: pip install 'signoff[postgres]'") from None
    try:  # one direct try first: a clear error now rather than a pool retrying in the logs
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot reach {redact_url(url)}: {_first(exc)}") from None
    # autocommit + dict_row + no prepared statements: what PostgresSaver needs of a connection;
    # the stores' PgConnection sets its own row factory per cursor.
    pool = ConnectionPool(url, min_size=1, max_size=size, open=False, timeout=10,
                          kwargs={"autocommit": True, "prepare_threshold": None,
                                  "row_factory": dict_row})
    try:
        pool.open(wait=True, timeout=10)
    except Exception as exc:
        pool.close()
        raise StoreUnavailable(f"cannot reach {redact_url(url)}: {_first(exc)}") from None
    return pool


def open_backend(root: Path, url: str | None, *, schema_prefix: str = DEFAULT_SCHEMA_PREFIX,
                 pool_size: int = DEFAULT_POOL_SIZE) -> Backend:
    """The backend `url` names (SIGNOFF_DATABASE_URL), else the SQLite directory `root`.

    A URL that is neither empty nor postgresql:// is a one-line StoreUnavailable.
    """
    if not url:
        return SqliteBackend(root)
    scheme = urlsplit(url).scheme
    if scheme not in ("postgresql", "postgres"):
        raise StoreUnavailable(f"{DATABASE_URL_ENV} must be a postgresql:// URL (or unset for "
                               f"SQLite under SIGNOFF_HOME), not {redact_url(url)!r}")
    return PostgresBackend(url, schema_prefix=schema_prefix, pool_size=pool_size)
