"""Reset one schema prefix's stores to the rows of another: the crash harness on PostgreSQL.

The harness runs hundreds of short kill plans, each on stores of its own. Upgrading a fresh
prefix and installing the sample data for every plan costs more than the plan; instead each
harness process keeps one prefix, made once the ordinary way (`backend.upgrade()` and
`install_domain`), and before each plan `reset_prefix` empties every table under it and copies
in the rows of a source prefix of the same shape (upgraded, data installed, and for a scenario
that starts from a waiting run, that run). Tables, indexes, constraints, row-level security and
grants are the ones `signoff db upgrade` made: only rows and sequence positions move.

It reads every tenant's rows, so it runs as a role that row-level security does not hide rows
from (a superuser or BYPASSRLS), as the harness's own counting does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_TABLES = ("SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n"
           " ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"
           " AND starts_with(n.nspname, %s)")
_FOREIGN_KEYS = ("SELECT conrelid, confrelid FROM pg_constraint WHERE contype = 'f'"
                 " AND conrelid = ANY(%s) AND confrelid <> conrelid")
_COLUMNS = ("SELECT attrelid, attname FROM pg_attribute WHERE attrelid = ANY(%s)"
            " AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attrelid, attnum")
_SEQUENCES = ("SELECT schemaname, sequencename, last_value, start_value FROM pg_sequences"
              " WHERE starts_with(schemaname, %s)")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _parents_first(oids: Sequence[int], edges: Sequence[tuple[int, int]]) -> list[int]:
    """`oids` ordered so that a table comes after every table its foreign keys reference."""
    parents: dict[int, set[int]] = {oid: set() for oid in oids}
    for child, parent in edges:
        if parent in parents:
            parents[child].add(parent)
    ordered: list[int] = []
    placed: set[int] = set()
    while len(ordered) < len(oids):
        ready = [oid for oid in oids if oid not in placed and parents[oid] <= placed]
        if not ready:
            raise RuntimeError("the stores' foreign keys form a cycle; cannot order the copy")
        ordered += ready
        placed.update(ready)
    return ordered


def reset_script(raw: Any, source: str, target: str) -> str:
    """The SQL that makes every table under the schema prefix `target` hold exactly the rows of
    its namesake under `source` (same stores, same schema versions) and each sequence the same
    position, read from the catalogs through the psycopg connection `raw`. A table under one
    prefix only is an error: the shapes must match."""
    with raw.cursor() as cur:
        found = {}
        for prefix in (source, target):
            rows = cur.execute(_TABLES, (prefix.lower(),)).fetchall()
            found[prefix] = {(r[0][len(prefix):], r[1]): r[2] for r in rows}
        if set(found[source]) != set(found[target]):
            differ = sorted(set(found[source]) ^ set(found[target]))
            raise RuntimeError(f"{source}* and {target}* hold different tables: {differ[:5]}")
        names = {oid: key for key, oid in found[target].items()}
        oids = list(names)
        edges = [(r[0], r[1]) for r in cur.execute(_FOREIGN_KEYS, (oids,)).fetchall()]
        columns: dict[int, list[str]] = {oid: [] for oid in oids}
        for oid, column in cur.execute(_COLUMNS, (oids,)).fetchall():
            columns[oid].append(_ident(column))
        sequences = cur.execute(_SEQUENCES, (source.lower(),)).fetchall()

    def name(prefix: str, store: str, table: str) -> str:
        return f"{_ident(prefix.lower() + store)}.{_ident(table)}"

    order = _parents_first(oids, edges)
    # The commit need not wait for the disk: the harness kills clients, never the server.
    script = ["SET LOCAL synchronous_commit = off"]
    # DELETE, not TRUNCATE: these tables hold a few hundred rows, and TRUNCATE's new files
    # cost far more than deleting them.
    script += [f"DELETE FROM {name(target, *names[oid])}" for oid in reversed(order)]
    for oid in order:
        cols = ", ".join(columns[oid])
        script.append(f"INSERT INTO {name(target, *names[oid])} ({cols}) OVERRIDING SYSTEM"
                      f" VALUE SELECT {cols} FROM {name(source, *names[oid])}")
    for schema, sequence, last, start in sequences:
        target_seq = name(target, schema[len(source):], sequence).replace("'", "''")
        script.append(f"SELECT setval('{target_seq}', {int(start if last is None else last)},"
                      f" {'true' if last is not None else 'false'})")
    return ";\n".join(script)


def reset_prefix(raw: Any, script: str) -> None:
    """Run a `reset_script` in one transaction on the psycopg connection `raw` (one round
    trip: the harness resets before each of hundreds of plans)."""
    with raw.transaction():
        raw.execute(script)


def drop_prefix(raw: Any, prefix: str) -> None:
    """Drop every schema whose name starts with `prefix` (the harness's own, afterwards)."""
    names = [r[0] for r in raw.execute(
        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
        (prefix.lower(),)).fetchall()]
    for name in names:
        raw.execute(f"DROP SCHEMA {_ident(name)} CASCADE")
