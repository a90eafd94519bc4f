"""Appends from several processes at once keep one gap-free hash chain: each append takes
the log's write lock before it reads the head (BEGIN IMMEDIATE on SQLite, an advisory
transaction lock on PostgreSQL; observability.audit)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from graph.runner import Home
from observability import verify_audit
from tests.stores import execute

WRITERS = 4
BATCHES = 20
PER_BATCH = 3

APPENDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from checkpoints.backend import open_backend
    from observability.audit import AuditEntry, AuditLog

    root, url, prefix, writer = sys.argv[1:5]
    backend = open_backend(Path(root), url or None, schema_prefix=prefix)
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


def test_four_processes_appending_at_once_keep_one_gap_free_chain(backend_home: Home) -> None:
    home = backend_home
    where = [str(home.root), home.database_url or "", home.schema_prefix]
    writers = [subprocess.Popen([sys.executable, "-c", APPENDER, *where, str(w)],
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
    # Each batch stays contiguous however the writers were scheduled (under load they may
    # also run one after another, so interleaving is not asserted).
    owners = [row[0] for row in execute(home, "audit",
                                         "SELECT run_id FROM audit ORDER BY seq")]
    assert len({tuple(owners[i:i + PER_BATCH]) for i in range(0, total, PER_BATCH)}) \
        == WRITERS
    result = verify_audit(home)
    assert (result.ok, result.entries_checked) == (True, total)
