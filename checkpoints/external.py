"""The crash harness against an external API: the sample payments service as its own process,
and the refunds counted in its own database.

`payments_service()` starts `signoff payments serve` on a free loopback port with a fresh
database and key, and points SIGNOFF_PAYMENTS_* of this process (and so of every child the
harness forks) at it. Options: `flaky` makes a share of refund calls commit and then answer
too late for the client (a timeout after commit), or commit and drop the connection;
`forward_key=False` is the control: the tool stops forwarding idempotency keys, and the
harness must then find duplicates.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.payments import store
from tools.payments.client import write_secret

API_DB_ENV = "SIGNOFF_SOAK_PAYMENTS_DB"
"""Set while a payments service runs for the harness: the database its refunds are counted in."""

FLAKY_FAULTS = {"commit_then_hang_rate": 0.2, "commit_then_drop_rate": 0.1, "hang_s": 1.0,
                "seed": 7}
CLIENT_TIMEOUT_S = "0.5"
"""Shorter than FLAKY_FAULTS' hang, so the hang is a client timeout after the commit."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def service_process(db: Path, faults_json: str | None = None) -> Iterator[str]:
    """`signoff payments serve` on a free loopback port as its own process; yields its URL,
    and stops it (SIGTERM, then SIGKILL) afterwards."""
    port = free_port()
    args = [sys.executable, "-m", "cli", "payments", "serve", "--port", str(port),
            "--db", str(db)]
    if faults_json:
        args += ["--faults", faults_json]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the payments service did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def payments_service(workdir: Path, *, flaky: bool = False,
                     forward_key: bool = True) -> Iterator[Path]:
    """Run the payments service for the harness; yields its database."""
    root = workdir / "payments"
    root.mkdir(parents=True, exist_ok=True)
    db, key_file = root / "payments.db", root / "payments.key"
    conn = store.connect(db)
    try:
        _, secret = store.create_key(conn, ("refunds:write", "refunds:read"))
    finally:
        conn.close()
    write_secret(key_file, secret)
    with service_process(db, json.dumps(FLAKY_FAULTS) if flaky else None) as url:
        env = {"SIGNOFF_PAYMENTS_URL": url, "SIGNOFF_PAYMENTS_KEY_FILE": str(key_file),
               API_DB_ENV: str(db),
               "SIGNOFF_PAYMENTS_TIMEOUT_S": CLIENT_TIMEOUT_S if flaky else "10",
               "SIGNOFF_PAYMENTS_UNSAFE_NO_KEY": "" if forward_key else "1",
               "NO_PROXY": "127.0.0.1,localhost"}
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield db
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def api_refunds(run_id: str) -> int | None:
    """Refunds the payments API holds for `run_id`, counted in its own database; None when
    the harness runs without one."""
    path = os.environ.get(API_DB_ENV)
    if not path:
        return None
    conn = sqlite3.connect(path, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM refunds"
                                " WHERE json_extract(metadata, '$.run_id') = ?",
                                (run_id,)).fetchone()[0])
    finally:
        conn.close()
