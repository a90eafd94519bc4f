"""The sample payments service and create_refund_request in API mode: idempotency at the API,
scoped keys, the ledger's pending intent and its reconciliation, answers that fail closed,
and the same support runs in both modes."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from graph.observe import price_fn, recorder_factory
from graph.runner import Home, Runner, RunResult
from graph.workflows import get_workflow
from tests.conftest import sample
from tests.payments_helpers import Payments, new_key, payments_in_thread, payments_process
from tools.payments.faults import PaymentsFaults

APPROVER = "lead@acme.example"


@pytest.fixture
def payments(tmp_path: Path) -> Iterator[Payments]:
    with payments_in_thread(tmp_path / "payments") as p:
        yield p


def api_mode(monkeypatch: pytest.MonkeyPatch, p: Payments, **extra: str) -> None:
    for name, value in {**p.env(), "SIGNOFF_PAYMENTS_TIMEOUT_S": "2", **extra}.items():
        monkeypatch.setenv(name, value)


def fresh_runner(home: Path) -> Runner:
    r = Runner(Home(home), recorder_factory=recorder_factory(), price=price_fn())
    r.ensure_domain_db(get_workflow("support"), reset=True)
    return r


def refund_run(home: Path) -> RunResult:
    """TKT-1001 (a small refund) on fresh sample data."""
    r = fresh_runner(home)
    try:
        return r.start("support", sample("TKT-1001"), requester="ops@acme.example")
    finally:
        r.close()


def domain(home: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(home / "support.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def key_of(p: Payments) -> str:
    return p.key_file.read_text().strip()


# The service itself ---------------------------------------------------------------------------

def test_same_key_same_body_is_the_first_refund_another_body_is_a_conflict(
        payments: Payments) -> None:
    auth = {"Authorization": f"Bearer {key_of(payments)}"}
    body = {"order_id": "ORD-1", "amount_cents": 500, "reason": "late"}
    with httpx.Client(base_url=payments.url, headers=auth) as c:
        first = c.post("/v1/refunds", json=body, headers={"Idempotency-Key": "k1"})
        again = c.post("/v1/refunds", json=body, headers={"Idempotency-Key": "k1"})
        other = c.post("/v1/refunds", json={**body, "amount_cents": 600},
                       headers={"Idempotency-Key": "k1"})
        found = c.get("/v1/refunds", params={"idempotency_key": "k1"})
        none = c.get("/v1/refunds", params={"idempotency_key": "nope"})
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409
    assert found.json()["id"] == first.json()["id"]
    assert none.status_code == 404
    assert len(payments.refunds()) == 1


def test_keys_are_scoped_to_actions_and_revocable(payments: Payments, tmp_path: Path) -> None:
    writer = new_key(payments.db, tmp_path / "w.key", ("refunds:write",))
    with httpx.Client(base_url=payments.url) as c:
        def call(method: str, path: str, secret: str, **kw: Any) -> int:
            return c.request(method, path, headers={"Authorization": f"Bearer {secret}"},
                             **kw).status_code
        assert call("POST", "/v1/refunds", writer,
                    json={"order_id": "O", "amount_cents": 1}) == 200
        assert call("GET", "/v1/customers", writer) == 403  # may refund, may not list people
        assert call("GET", "/v1/refunds", writer, params={"idempotency_key": "x"}) == 403
        assert call("DELETE", "/v1/keys/current", writer) == 200
        assert call("POST", "/v1/refunds", writer,
                    json={"order_id": "O", "amount_cents": 1}) == 401
        assert call("GET", "/v1/customers", "sk_test_made_up") == 401


def test_the_service_runs_as_its_own_process_from_the_cli(tmp_path: Path) -> None:
    with payments_process(tmp_path / "proc") as p:
        r = httpx.get(f"{p.url}/v1/refunds", params={"idempotency_key": "k"},
                      headers={"Authorization": f"Bearer {key_of(p)}"})
    assert r.status_code == 404 and r.json()["error"]["message"]


@pytest.mark.parametrize(("faults", "expected"), [
    ('{"error_rate": 2}', "error_rate must be a number from 0 to 1"),
    ('{"surprise": 1}', "unknown fault setting(s): surprise"),
    ("[1]", "faults must be a JSON object"),
    ("/no/such/faults.json", "cannot read faults file"),
])
def test_bad_fault_settings_are_one_line_errors(faults: str, expected: str,
                                                tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["payments", "serve", "--port", "0",
                                      "--db", str(tmp_path / "p.db"), "--faults", faults])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: ") and expected in result.output
    assert len(result.output.strip().splitlines()) == 1


# create_refund_request in both modes ----------------------------------------------------------

@pytest.mark.parametrize("mode", ["local", "api"])
def test_a_refund_run_resolves_in_both_modes(mode: str, home: Path, payments: Payments,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if mode == "api":
        api_mode(monkeypatch, payments)
    result = refund_run(home)
    assert result.status == "resolved" and result.mutations == 2
    refund_ids = [row[0] for row in domain(home, "SELECT refund_id FROM refunds WHERE run_id = ?",
                                           result.run_id)]
    at_api = payments.refunds(result.run_id)
    if mode == "local":
        assert refund_ids[0].startswith("RF-") and at_api == []
    else:
        assert [x["id"] for x in at_api] == refund_ids  # the local row carries the API's id
        assert domain(home, "SELECT status, external_id FROM external_intents") == [
            ("confirmed", refund_ids[0])]


def test_an_approved_refund_goes_to_the_api_once_even_when_approved_twice(
        home: Path, payments: Payments, monkeypatch: pytest.MonkeyPatch) -> None:
    api_mode(monkeypatch, payments)
    r = fresh_runner(home)
    try:
        held = r.start("support", sample("TKT-1002"), requester="ops@acme.example")
        assert held.status == "waiting_approval" and payments.refunds() == []
        done = r.decide(held.run_id, {"action": "approve", "by": APPROVER, "reason": "ok"})
    finally:
        r.close()
    assert done.status == "resolved"
    assert len(payments.refunds(held.run_id)) == 1


@pytest.mark.parametrize("faults", [
    # Every first POST commits, then the answer comes too late for the client ...
    PaymentsFaults(commit_then_hang_rate=1.0, hang_s=1.0),
    # ... or never comes: the connection is dropped after the commit.
    PaymentsFaults(commit_then_drop_rate=1.0),
], ids=["timeout-after-commit", "drop-after-commit"])
def test_an_unknown_outcome_after_the_api_committed_is_reconciled_not_repeated(
        faults: PaymentsFaults, home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The retry must find the refund by its key instead of refunding again.
    with payments_in_thread(tmp_path / "flaky", faults) as p:
        api_mode(monkeypatch, p, SIGNOFF_PAYMENTS_TIMEOUT_S="0.3")
        result = refund_run(home)
        assert result.status == "resolved"
        assert len(p.refunds(result.run_id)) == 1


def test_without_the_key_forwarded_the_same_faults_refund_twice(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The control for the two tests above: the rule (forward the key) is what saves them.
    faults = PaymentsFaults(commit_then_drop_rate=0.5, seed=1)
    with payments_in_thread(tmp_path / "nokey", faults) as p:
        api_mode(monkeypatch, p, SIGNOFF_PAYMENTS_UNSAFE_NO_KEY="1")
        result = refund_run(home)
        assert len(p.refunds(result.run_id)) > 1


# Answers that do not confirm the refund fail closed ------------------------------------------

class _BadApi(BaseHTTPRequestHandler):
    answer: tuple[int, str, bytes] = (200, "text/html", b"<html>oops</html>")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _reply(self) -> None:
        if self.command == "GET":  # no earlier refund: the lookup finds none
            status, kind, body = 404, "application/json", b'{"error": {"message": "none"}}'
        else:
            status, kind, body = self.answer
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply


@pytest.mark.parametrize(("answer", "reason"), [
    ((200, "text/html", b"<html>Bad gateway</html>"), "not JSON"),
    ((200, "application/json", b'{"object": "refund", "order_id": "ORD-10001",'
                               b' "amount_cents": 1800}'), "has no refund id"),
    ((200, "application/json", b'{"id": "re_1", "order_id": "ORD-10001", "amount_cents": 99}'),
     "amount_cents=99"),
    ((409, "application/json", b'{"error": {"message": "key reused"}}'), "conflict"),
])
def test_an_answer_that_does_not_confirm_the_refund_blocks_the_run(
        answer: tuple[int, str, bytes], reason: str, home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    handler = type("Bad", (_BadApi,), {"answer": answer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key_file = tmp_path / "k"
    key_file.write_text("sk_test_whatever\n")
    monkeypatch.setenv("SIGNOFF_PAYMENTS_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("SIGNOFF_PAYMENTS_KEY_FILE", str(key_file))
    try:
        result = refund_run(home)
    finally:
        server.shutdown()
        server.server_close()
    assert result.status == "blocked"
    assert "unconfirmed external effect" in (result.reason or "")
    assert reason in (result.reason or "")
    # Nothing the API did not confirm is marked confirmed: the intent stays pending.
    assert domain(home, "SELECT status FROM external_intents") == [("pending",)]
    assert domain(home, "SELECT COUNT(*) FROM refunds WHERE run_id = ?", result.run_id) == [(0,)]
    assert domain(home, "SELECT COUNT(*) FROM mutation_ledger WHERE run_id = ?"
                  " AND tool = 'create_refund_request'", result.run_id) == [(0,)]


def test_an_unreadable_key_file_blocks_the_run_before_any_call(
        home: Path, payments: Payments, monkeypatch: pytest.MonkeyPatch) -> None:
    api_mode(monkeypatch, payments, SIGNOFF_PAYMENTS_KEY_FILE=str(home / "missing.key"))
    result = refund_run(home)
    assert result.status == "blocked" and "cannot read the payments key file" in str(
        result.reason)
    assert payments.refunds() == []


# Credentials ---------------------------------------------------------------------------------

def test_the_key_never_lands_under_signoff_home(home: Path, payments: Payments,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    api_mode(monkeypatch, payments)
    secret = key_of(payments).encode()
    cli = CliRunner()
    assert "resolved" in cli.invoke(app, ["run", "TKT-1001"]).output
    held = cli.invoke(app, ["run", "TKT-1002", "--as", "ops@acme.example"])
    run_id = held.output.split()[1].rstrip(":")
    assert "resolved" in cli.invoke(app, ["approve", run_id, "--as", APPROVER,
                                          "--reason", "ok"]).output
    assert len(payments.refunds()) == 2
    files = [f for f in home.rglob("*") if f.is_file()]
    assert any(f.name.startswith("checkpoints") for f in files)
    assert any("trace" in f.name or "audit" in f.name for f in files), files
    for f in files:
        assert secret not in f.read_bytes(), f


def test_rotation_switches_the_tools_and_revokes_the_old_key(
        home: Path, payments: Payments, monkeypatch: pytest.MonkeyPatch) -> None:
    api_mode(monkeypatch, payments)
    old = key_of(payments)
    cli = CliRunner()
    held = cli.invoke(app, ["run", "TKT-1002", "--as", "ops@acme.example"])
    run_id = held.output.split()[1].rstrip(":")
    rotated = cli.invoke(app, ["credentials", "rotate", "payments"])
    assert rotated.exit_code == 0, rotated.output
    new = key_of(payments)
    assert new != old and payments.key_file.stat().st_mode & 0o077 == 0
    with httpx.Client(base_url=payments.url) as c:
        def lookup(secret: str) -> int:
            return c.get("/v1/refunds", params={"idempotency_key": "x"},
                         headers={"Authorization": f"Bearer {secret}"}).status_code
        assert lookup(old) == 401 and lookup(new) == 404
    # The run that was waiting when the key changed refunds with the new key.
    done = cli.invoke(app, ["approve", run_id, "--as", APPROVER, "--reason", "ok"])
    assert "resolved" in done.output, done.output
    assert len(payments.refunds(run_id)) == 1


def test_rotation_without_an_api_is_a_one_line_error(home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNOFF_PAYMENTS_URL", raising=False)
    result = CliRunner().invoke(app, ["credentials", "rotate", "payments"])
    assert result.exit_code == 1 and result.output.startswith("error: SIGNOFF_PAYMENTS_URL")
    result = CliRunner().invoke(app, ["credentials", "rotate", "iam"])
    assert result.exit_code == 1 and "unknown credential 'iam'" in result.output


def test_the_refund_request_sent_carries_no_credential(home: Path, payments: Payments,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    api_mode(monkeypatch, payments)
    r = fresh_runner(home)
    try:
        r.start("support", sample("TKT-1001"), requester="ops@acme.example")
    finally:
        r.close()
    (request,) = domain(home, "SELECT request FROM external_intents")
    body = json.loads(request[0])
    assert set(body) == {"order_id", "amount_cents", "reason", "metadata"}
    assert key_of(payments) not in request[0]


def test_injected_tool_faults_reach_the_api_mode_refund_before_anything_is_sent(
        home: Path, payments: Payments, monkeypatch: pytest.MonkeyPatch) -> None:
    # The release gate's fallback drill relies on this: a refund that always fails must not
    # reach the payments API in API mode either.
    from tools.support.faults import FaultPlan

    api_mode(monkeypatch, payments)
    r = Runner(Home(home), sleep=lambda _s: None,
               tool_faults=FaultPlan(fail_first={"create_refund_request": 1000}))
    r.ensure_domain_db(get_workflow("support"), reset=True)
    try:
        result = r.start("support", sample("TKT-1001"), requester="ops@acme.example")
    finally:
        r.close()
    assert result.status == "failed" and "injected fault" in str(result.reason)
    assert payments.refunds() == []


def test_the_gate_item_wants_a_recently_rotated_key(tmp_path: Path) -> None:
    import os
    import time

    from tools.payments.client import key_rotation_check

    key_file = tmp_path / "payments.key"
    key_file.write_text("sk_test_x\n")
    env = {"SIGNOFF_PAYMENTS_URL": "http://127.0.0.1:1", "SIGNOFF_PAYMENTS_KEY_FILE": str(key_file)}
    now = time.time()
    assert key_rotation_check(env, now)[0]
    os.utime(key_file, (now - 100 * 86400, now - 100 * 86400))
    ok, detail = key_rotation_check(env, now)
    assert not ok and "100.0 day(s) ago (limit 90" in detail
    assert key_rotation_check({**env, "SIGNOFF_PAYMENTS_KEY_MAX_AGE_DAYS": "120"}, now)[0]
    from_env = {"SIGNOFF_PAYMENTS_URL": "http://x", "SIGNOFF_PAYMENTS_KEY": "k"}
    ok, detail = key_rotation_check(from_env, now)
    assert not ok and "age is unknown" in detail
    assert key_rotation_check({}, now)[0]  # self-contained: nothing to rotate


def test_rotating_makes_the_gate_item_pass_again(home: Path, payments: Payments,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import time

    from tools.payments.client import key_rotation_check

    api_mode(monkeypatch, payments)
    old = time.time() - 200 * 86400
    os.utime(payments.key_file, (old, old))
    assert not key_rotation_check(dict(os.environ), time.time())[0]
    assert CliRunner().invoke(app, ["credentials", "rotate", "payments"]).exit_code == 0
    assert key_rotation_check(dict(os.environ), time.time())[0]
