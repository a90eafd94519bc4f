"""The payments service's HTTP API (stdlib ThreadingHTTPServer, JSON in and out).

    POST /v1/refunds            refunds:write  Idempotency-Key header: same key and body
                                               return the first refund, another body is 409
    GET  /v1/refunds?idempotency_key=K  refunds:read   one refund, 404 when none
    GET  /v1/refunds/{id}       refunds:read
    GET  /v1/customers          customers:read
    POST /v1/keys/roll          keys:roll      a new key with the caller's scopes
    DELETE /v1/keys/current     (any live key) revokes the key that makes the call

Every request carries `Authorization: Bearer <key>`; an unknown or revoked key is 401, a key
without the action's scope 403.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tools.payments import store
from tools.payments.faults import FaultDice, PaymentsFaults

MAX_BODY = 64 * 1024


class PaymentsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], db: Path,
                 faults: PaymentsFaults | None = None) -> None:
        super().__init__(address, Handler)
        self.db = db
        self.dice = FaultDice(faults or PaymentsFaults())
        self._local = threading.local()
        store.connect(db).close()  # create the schema once, before any request

    def conn(self) -> sqlite3.Connection:
        """One connection per handler thread."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = store.connect(self.db, setup=False)
        return conn


class Handler(BaseHTTPRequestHandler):
    server: PaymentsServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests and the harness start many of these

    # Plumbing --------------------------------------------------------------------------

    def _send(self, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        if self.server.dice.faults.slow_s:
            time.sleep(self.server.dice.faults.slow_s)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        # The request body may be unread: the socket is not reused (the header says so).
        self._send(status, {"error": {"message": message}}, {"Connection": "close"})

    def _auth(self, scope: str | None) -> store.ApiKey | None:
        header = self.headers.get("Authorization", "")
        secret = header[7:].strip() if header.startswith("Bearer ") else ""
        key = store.authenticate(self.server.conn(), secret) if secret else None
        if key is None:
            self._error(401, "unknown or revoked API key")
            return None
        if scope is not None and scope not in key.scopes:
            self._error(403, f"this key may not {scope}")
            return None
        return key

    def _body(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._error(400, "bad Content-Length")
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._error(400, "body is not JSON")
            return None
        if not isinstance(body, dict):
            self._error(400, "body must be a JSON object")
            return None
        return body

    # Routes ----------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        conn = self.server.conn()
        if url.path == "/v1/refunds":
            if self._auth("refunds:read") is None:
                return
            keys = parse_qs(url.query).get("idempotency_key")
            if not keys:
                self._error(400, "give idempotency_key")
                return
            row = store.refund_by_key(conn, keys[0])
            if row is None:
                self._error(404, "no refund with this idempotency key")
                return
            self._send(200, store.refund_json(row))
        elif url.path.startswith("/v1/refunds/"):
            if self._auth("refunds:read") is None:
                return
            row = conn.execute("SELECT * FROM refunds WHERE id = ?",
                               (url.path.rsplit("/", 1)[1],)).fetchone()
            if row is None:
                self._error(404, "no such refund")
                return
            self._send(200, store.refund_json(row))
        elif url.path == "/v1/customers":
            if self._auth("customers:read") is None:
                return
            rows = conn.execute("SELECT id, email, name FROM customers ORDER BY id").fetchall()
            self._send(200, {"data": [dict(r) for r in rows]})
        else:
            self._error(404, "no such route")

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/v1/refunds":
            self._create_refund()
        elif path == "/v1/keys/roll":
            key = self._auth("keys:roll")
            if key is None or self._body() is None:
                return
            new, secret = store.create_key(self.server.conn(), key.scopes)
            self._send(200, {"id": new.id, "secret": secret, "scopes": sorted(new.scopes),
                             "created": new.created})
        else:
            self._error(404, "no such route")

    def do_DELETE(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/v1/keys/current":
            self._error(404, "no such route")
            return
        key = self._auth(None)
        if key is not None:
            store.revoke_key(self.server.conn(), key.id)
            self._send(200, {"id": key.id, "revoked": True})

    def _create_refund(self) -> None:
        if self._auth("refunds:write") is None:
            return
        body = self._body()
        if body is None:
            return
        amount = body.get("amount_cents")
        if not isinstance(body.get("order_id"), str) or not isinstance(amount, int) \
                or isinstance(amount, bool) or amount <= 0:
            self._error(400, "order_id (text) and amount_cents (a positive integer) are needed")
            return
        if not isinstance(body.get("metadata", {}), dict):
            self._error(400, "metadata must be an object")
            return
        fault = self.server.dice.draw()
        hang = self.server.dice.faults.hang_s
        if fault in ("error", "timeout"):
            store.record_fault(self.server.conn(), fault, "/v1/refunds")
        if fault == "error":
            self._error(503, "injected fault: unavailable")
            return
        if fault == "timeout":
            time.sleep(hang)
            self._error(503, "injected fault: timed out")
            return
        key = self.headers.get("Idempotency-Key") or None
        conn = self.server.conn()
        conn.execute("BEGIN IMMEDIATE")  # the key check and the insert are one step
        try:
            row = store.refund_by_key(conn, key) if key else None
            replayed = row is not None
            if row is not None and row["request_hash"] != store.request_hash(body):
                conn.execute("ROLLBACK")
                self._error(409, "this idempotency key was used with another request")
                return
            if row is None:
                row = store.insert_refund(conn, body, key)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if fault is not None and fault.startswith("commit_then") and not replayed:
            store.record_fault(conn, fault, "/v1/refunds")
        if fault == "commit_then_drop" and not replayed:
            self.close_connection = True
            return  # committed, and the client never hears of it
        if fault == "commit_then_hang" and not replayed:
            time.sleep(hang)
        self._send(200, store.refund_json(row),
                   {"Idempotent-Replayed": "true"} if replayed else None)


def serve(host: str, port: int, db: Path, faults: PaymentsFaults | None = None,
          ready: Any = None) -> None:
    """Serve until interrupted; `ready(server)` is called once the socket listens."""
    server = PaymentsServer((host, port), db, faults)
    if ready is not None:
        ready(server)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
