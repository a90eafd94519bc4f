"""Sample payments services for tests: in a thread of the test process, or as their own
process started through the CLI (`signoff payments serve`), always on a loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkpoints.external import service_process
from tools.payments import store
from tools.payments.client import write_secret
from tools.payments.faults import PaymentsFaults
from tools.payments.server import PaymentsServer

SCOPES = ("refunds:write", "refunds:read", "keys:roll")


@dataclass(frozen=True)
class Payments:
    url: str
    db: Path
    key_file: Path

    def env(self) -> dict[str, str]:
        return {"SIGNOFF_PAYMENTS_URL": self.url,
                "SIGNOFF_PAYMENTS_KEY_FILE": str(self.key_file)}

    def refunds(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Refunds as the API's own database holds them (of one run when given)."""
        conn = store.connect(self.db)
        try:
            rows = [store.refund_json(r) for r in conn.execute(
                "SELECT * FROM refunds ORDER BY created")]
        finally:
            conn.close()
        return [r for r in rows if run_id is None or r["metadata"].get("run_id") == run_id]


def new_key(db: Path, key_file: Path, scopes: tuple[str, ...] = SCOPES) -> str:
    conn = store.connect(db)
    try:
        _, secret = store.create_key(conn, scopes)
    finally:
        conn.close()
    write_secret(key_file, secret)
    return secret


@contextmanager
def payments_in_thread(root: Path, faults: PaymentsFaults | None = None) -> Iterator[Payments]:
    root.mkdir(parents=True, exist_ok=True)
    db, key_file = root / "payments.db", root / "secrets" / "payments.key"
    server = PaymentsServer(("127.0.0.1", 0), db, faults)
    new_key(db, key_file)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield Payments(f"http://127.0.0.1:{server.server_address[1]}", db, key_file)
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def payments_process(root: Path, faults_json: str | None = None) -> Iterator[Payments]:
    """`signoff payments serve` as its own process (checkpoints.external.service_process)."""
    root.mkdir(parents=True, exist_ok=True)
    db, key_file = root / "payments.db", root / "secrets" / "payments.key"
    store.connect(db).close()
    new_key(db, key_file)
    with service_process(db, faults_json) as url:
        yield Payments(url, db, key_file)
