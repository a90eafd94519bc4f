"""Appends from several processes at once keep one gap-free hash chain on PostgreSQL: each
append takes the log's advisory lock before it reads the head (observability.audit)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from graph.runner import Home
from observability import verify_audit
from tests.pg import pg_schemas
from tests.stores import execute

WRITERS = 4
BATCHES = 40
PER_BATCH = 3

APPENDER = textwrap.dedent("""
    import sys, time
    from checkpoints.backend import PostgresBackend
    from observability.audit import AuditEntry, AuditLog

    url, prefix, writer = sys.argv[1], sys.argv[2], sys.argv[3]
    backend = PostgresBackend(url, schema_prefix=prefix)
    log = AuditLog(backend, clock=time.time)
    print("ready", flush=True)
    sys.stdin.readline()  # start together, so the appends interleave
    for batch in range({batches}):
        log.append_many([AuditEntry("gate", f"w{{writer}}", {{"batch": batch, "n": n}},
                                    f"w{{writer}}-{{batch}}-{{n}}", None)
                         for n in range({per_batch})])
    log.close()
    backend.close()
""").format(batches=BATCHES, per_batch=PER_BATCH)


def test_four_processes_appending_at_once_keep_one_gap_free_chain(tmp_path: Path) -> None:
    with pg_schemas() as (url, prefix):
        home = Home(tmp_path, database_url=url, schema_prefix=prefix)
        backend = home.open_backend()
        try:
            backend.upgrade()
        finally:
            backend.close()
        writers = [subprocess.Popen([sys.executable, "-c", APPENDER, url, prefix, str(w)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
                   for w in range(WRITERS)]
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        errors = [w.communicate(timeout=120)[1] for w in writers]
        assert [w.returncode for w in writers] == [0] * WRITERS, errors

        total = WRITERS * BATCHES * PER_BATCH
        seqs = [row[0] for row in execute(home, "audit", "SELECT seq FROM audit ORDER BY seq")]
        assert seqs == list(range(1, total + 1))
        # The writers' batches interleave (they ran at once), yet each batch stays contiguous.
        owners = [row[0] for row in execute(home, "audit",
                                             "SELECT run_id FROM audit ORDER BY seq")]
        assert len({tuple(owners[i:i + PER_BATCH]) for i in range(0, total, PER_BATCH)}) \
            == WRITERS
        assert owners != sorted(owners)
        result = verify_audit(home)
        assert (result.ok, result.entries_checked) == (True, total)
