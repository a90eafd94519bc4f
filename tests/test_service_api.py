"""The REST API: bearer tokens, who may see and decide a run, decisions naming the held call,
and one JSON error line for every refusal, with nothing changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from checkpoints.accounts import AccountStore
from checkpoints.backend import SCHEMAS, PostgresBackend, SqliteBackend
from cli.main import app
from graph.runner import Home
from service.openapi import OPENAPI_DOC, openapi_text
from tests.pg import pg_schemas
from tests.service_support import Clock, as_deployed, build_app, refunds, served, tokens

NOW = 1_800_000_000.0


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def api(home: Path, clock: Clock) -> Iterator[TestClient]:
    with TestClient(build_app(home, clock)) as client:
        yield client


def headers(secrets: dict[str, str]) -> dict[str, dict[str, str]]:
    """Authorization headers per user of tests.service_support.USERS."""
    return {key: {"Authorization": f"Bearer {secret}"} for key, secret in secrets.items()}


@pytest.fixture
def who(home: Path, clock: Clock) -> dict[str, dict[str, str]]:
    return headers(tokens(home, clock))


@pytest.fixture
def grid(backend_home: Home, clock: Clock
         ) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    """The app and its users' headers on each backend of the grid, the app connected as a
    deployment's (tests/service_support.py `as_deployed`): a Home of its own, so a test can
    tell the service's use of it from its own."""
    who = headers(tokens(backend_home, clock))
    with TestClient(build_app(backend_home, clock, serve_as=as_deployed(backend_home))
                    ) as client:
        yield client, who


def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"], body
    return str(body["error"])


def held_run(api: TestClient, who: dict[str, dict[str, str]]) -> dict[str, Any]:
    started = api.post("/api/v1/runs", json={"ticket_id": "TKT-1002"}, headers=who["agent"])
    assert started.status_code == 201, started.text
    view = started.json()
    assert view["status"] == "waiting_approval" and view["requester"] == "agent@acme.example"
    assert view["held"]["tool"] == "create_refund_request"
    assert view["held"]["rule_id"] == "refund.needs_approval"
    return dict(view)


def test_every_route_needs_a_live_token(api: TestClient, who: dict[str, dict[str, str]],
                                        home: Path, clock: Clock) -> None:
    assert "bearer token" in error_of(api.get("/api/v1/runs"), 401)
    assert api.get("/api/v1/runs").headers["www-authenticate"] == "Bearer"
    assert "unknown" in error_of(api.get("/api/v1/runs",
                                         headers={"Authorization": "Bearer so_nope"}), 401)
    accounts = AccountStore.open(SqliteBackend(home), clock=clock)
    token_id, secret = accounts.create_token("lead@acme.example", expires_in="1h")
    short = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/v1/me", headers=short).json()["email"] == "lead@acme.example"
    clock.now += 3601
    assert "expired" in error_of(api.get("/api/v1/me", headers=short), 401)
    agents = [t["token_id"] for t in accounts.tokens() if t["email"] == "agent@acme.example"]
    accounts.revoke_token(str(agents[0]))
    accounts.close()
    assert "revoked" in error_of(api.get("/api/v1/me", headers=who["agent"]), 401)
    assert token_id.startswith("tok-")


def test_tokens_are_stored_hashed(home: Path, who: dict[str, dict[str, str]]) -> None:
    secret = who["lead"]["Authorization"].split()[1]
    assert secret.encode() not in (home / "control.db").read_bytes()


def test_the_core_flow_on_each_backend(grid: tuple[TestClient, dict[str, dict[str, str]]],
                                       backend_home: Home,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Start TKT-1002, see the hold as the tenant's approver, decide it by its digest: one
    refund on the backend, and a second service process on the same stores applies nothing
    more; every refusal changes nothing; the audit chain and the trace search read the same
    stores, through the service's one backend."""
    api, who = grid
    served_home = api.app.state.service.settings.home  # type: ignore[attr-defined]
    opened: list[Home] = []
    open_backend = Home.open_backend

    def counted(self: Home) -> Any:
        if self is served_home:
            opened.append(self)
        return open_backend(self)

    monkeypatch.setattr(Home, "open_backend", counted)
    view = held_run(api, who)
    run, digest = view["run_id"], view["held"]["digest"]
    decide = f"/api/v1/runs/{run}/decision"
    pending = api.get("/api/v1/runs?pending_for_me=true", headers=who["lead"]).json()["runs"]
    assert [(r["run_id"], r["held"]["digest"], r["can_decide"]) for r in pending] == \
        [(run, digest, True)]
    # Another tenant's lead cannot even see it; a role the rule does not accept is refused;
    # the requester can never decide their own run.
    assert "no run" in error_of(api.get(f"/api/v1/runs/{run}", headers=who["globex"]), 404)
    assert "no run" in error_of(api.post(decide, json={"action": "approve",
                                                        "held_digest": digest},
                                         headers=who["globex"]), 404)
    assert "support_lead" in error_of(api.post(decide, json={"action": "approve",
                                                              "held_digest": digest},
                                               headers=who["finance"]), 403)
    assert "started this run" in error_of(api.post(decide, json={"action": "approve",
                                                                  "held_digest": digest},
                                                   headers=who["agent"]), 403)
    # The decider comes from the token, never from the body.
    error_of(api.post(decide, json={"action": "approve", "held_digest": digest,
                                    "by": "lead@acme.example"}, headers=who["finance"]), 422)
    # A decision for a call that is no longer the one held changes nothing.
    assert "no longer holds" in error_of(api.post(decide, json={"action": "approve",
                                                                 "held_digest": "0" * 32},
                                                  headers=who["lead"]), 409)
    assert refunds(backend_home) == 0
    assert api.get(f"/api/v1/runs/{run}", headers=who["lead"]).json()["status"] == \
        "waiting_approval"

    approved = api.post(decide, json={"action": "approve", "held_digest": digest,
                                      "reason": "receipt checked"}, headers=who["lead"])
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "resolved"
    assert refunds(backend_home) == 1
    # A second service process on the same stores (as behind a load balancer) sees the run
    # resolved, and the same decision sent there again applies nothing.
    with TestClient(build_app(backend_home, serve_as=as_deployed(backend_home))) as other:
        assert other.get(f"/api/v1/runs/{run}", headers=who["lead"]).json()["status"] == \
            "resolved"
        again = other.post(decide, json={"action": "approve", "held_digest": digest},
                           headers=who["lead"])
        assert "not waiting" in error_of(again, 409)
    assert refunds(backend_home) == 1
    lines = api.get(f"/api/v1/runs/{run}/timeline", headers=who["lead"]).json()["lines"]
    assert any("lead@acme.example" in line for line in lines)

    verified = api.get("/api/v1/audit/verify", headers=who["operator"]).json()
    assert verified["ok"] is True and verified["entries_checked"] > 0
    head = api.get("/api/v1/audit/head", headers=who["operator"]).json()["head"]
    assert api.get("/api/v1/audit/verify", params={"head": head},
                   headers=who["operator"]).json()["ok"] is True
    traced = api.get("/api/v1/traces?tool=create_refund_request",
                     headers=who["lead"]).json()["runs"]
    assert [(r["run_id"], r["outcome"]) for r in traced] == [(run, "resolved")]
    assert api.get("/api/v1/traces", headers=who["globex"]).json()["runs"] == []
    assert api.get("/api/v1/report", headers=who["operator"]).json()["runs"] == 1
    # Every request used the backend the service opened at start-up.
    assert not opened, f"the service opened {len(opened)} backend(s) after it started"


def test_reject_and_an_edit_that_turns_red(api: TestClient, who: dict[str, dict[str, str]],
                                           home: Path) -> None:
    first, second = held_run(api, who), held_run(api, who)
    rejected = api.post(f"/api/v1/runs/{first['run_id']}/decision",
                        json={"action": "reject", "held_digest": first["held"]["digest"],
                              "reason": "no receipt"}, headers=who["lead"])
    assert rejected.json()["status"] == "rejected" and "no receipt" in rejected.json()["reason"]
    assert "needs a reason" in error_of(api.post(
        f"/api/v1/runs/{second['run_id']}/decision",
        json={"action": "reject", "held_digest": second["held"]["digest"]},
        headers=who["lead"]), 422)
    assert "schema" in error_of(api.post(
        f"/api/v1/runs/{second['run_id']}/decision",
        json={"action": "edit", "held_digest": second["held"]["digest"],
              "args": {"amount_cents": "lots"}}, headers=who["lead"]), 422)
    edited = api.post(f"/api/v1/runs/{second['run_id']}/decision",
                      json={"action": "edit", "held_digest": second["held"]["digest"],
                            "args": {"amount_cents": 60000}}, headers=who["lead"])
    assert edited.json()["status"] == "blocked", edited.text
    assert "refund.over_ceiling" in edited.json()["reason"]
    assert refunds(home) == 0


def test_lists_only_the_principals_tenants(api: TestClient, who: dict[str, dict[str, str]]
                                           ) -> None:
    view = held_run(api, who)
    assert [r["run_id"] for r in api.get("/api/v1/runs", headers=who["lead"]).json()["runs"]] \
        == [view["run_id"]]
    assert api.get("/api/v1/runs", headers=who["globex"]).json()["runs"] == []
    mine = api.get("/api/v1/runs?pending_for_me=true", headers=who["finance"]).json()["runs"]
    assert mine == []  # finance may see the hold, but not decide it
    assert api.get("/api/v1/runs?pending_for_me=true",
                   headers=who["lead"]).json()["runs"][0]["can_decide"] is True
    traced = api.get("/api/v1/traces?tool=get_order", headers=who["lead"]).json()["runs"]
    assert [r["run_id"] for r in traced] == [view["run_id"]]
    assert api.get("/api/v1/traces", headers=who["globex"]).json()["runs"] == []


def test_operator_routes(api: TestClient, who: dict[str, dict[str, str]]) -> None:
    held_run(api, who)
    assert "not an operator" in error_of(api.get("/api/v1/report", headers=who["lead"]), 403)
    assert api.get("/api/v1/report", headers=who["operator"]).json()["runs"] == 1
    verified = api.get("/api/v1/audit/verify", headers=who["operator"]).json()
    assert verified["ok"] is True and verified["entries_checked"] > 0
    head = api.get("/api/v1/audit/head", headers=who["operator"]).json()["head"]
    assert api.get("/api/v1/audit/verify", params={"head": head},
                   headers=who["operator"]).json()["ok"] is True
    error_of(api.get("/api/v1/audit/verify", params={"head": "x"}, headers=who["operator"]),
             400)
    killed = api.post("/api/v1/kill", json={"workflow": "support", "reason": "investigating"},
                      headers=who["operator"])
    assert killed.json()["message"] == "kill switch set for workflow support: investigating"
    stopped = api.post("/api/v1/runs", json={"ticket_id": "TKT-1001"}, headers=who["agent"])
    assert stopped.json()["status"] == "blocked" and "kill switch" in stopped.json()["reason"]
    assert "exactly one" in error_of(api.post("/api/v1/unkill", json={},
                                              headers=who["operator"]), 400)
    assert api.post("/api/v1/unkill", json={"workflow": "support"},
                    headers=who["operator"]).status_code == 200
    assert "no kill switch" in error_of(api.post("/api/v1/unkill", json={"workflow": "support"},
                                                 headers=who["operator"]), 400)


def test_bad_input_is_one_json_error(api: TestClient, who: dict[str, dict[str, str]]) -> None:
    assert "unknown sample ticket" in error_of(
        api.post("/api/v1/runs", json={"ticket_id": "TKT-9"}, headers=who["agent"]), 400)
    assert "holds no role in tenant globex" in error_of(
        api.post("/api/v1/runs", json={"text": "Where is my order?", "email": "a@b.example",
                                       "tenant": "globex"}, headers=who["agent"]), 403)
    error_of(api.post("/api/v1/runs", content=b"{", headers={**who["agent"],
                                                             "content-type": "application/json"}),
             422)
    error_of(api.get("/api/v1/runs?limit=0", headers=who["agent"]), 422)
    assert api.get("/api/v1/runs", headers=who["agent"]).json()["runs"] == []


def test_openapi_document_in_docs_is_current(api: TestClient) -> None:
    served_doc = api.get("/api/v1/openapi.json").json()
    assert "/api/v1/runs/{run_id}/decision" in served_doc["paths"]
    assert OPENAPI_DOC.read_text(encoding="utf-8") == openapi_text(), (
        "docs/openapi.json is stale: run `python -m service.openapi` and commit it")
    assert json.loads(openapi_text()) == served_doc


def test_cli_goes_through_the_api(home: Path, clock: Clock, tmp_path: Path) -> None:
    """status, runs, approve with SIGNOFF_URL and SIGNOFF_TOKEN: the decider is the token's."""
    secrets = tokens(home, clock)
    with TestClient(build_app(home)) as api:
        view = held_run(api, {"agent": {"Authorization": f"Bearer {secrets['agent']}"}})
    run = view["run_id"]
    with served(build_app(home)) as url:
        def cli(user: str, *args: str) -> subprocess.CompletedProcess[str]:
            env = {**os.environ, "SIGNOFF_URL": url, "SIGNOFF_TOKEN": secrets[user],
                   "SIGNOFF_HOME": str(tmp_path / "elsewhere"), "NO_PROXY": "127.0.0.1"}
            return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True,
                                  text=True, env=env, timeout=120,
                                  cwd=Path(__file__).resolve().parents[1])

        status = cli("lead", "status", run)
        assert "waiting_approval" in status.stdout and view["held"]["digest"] in status.stdout
        assert run in cli("lead", "runs").stdout
        assert cli("globex", "runs").stdout.count("run-") == 0
        refused = cli("finance", "approve", run)
        assert refused.returncode == 1 and "(HTTP 403)" in refused.stderr
        spoof = cli("finance", "approve", run, "--as", "lead@acme.example")
        assert spoof.returncode == 1 and "--as is not taken" in spoof.stderr
        stale = cli("lead", "approve", run, "--held", "0" * 32)
        assert stale.returncode == 1 and "(HTTP 409)" in stale.stderr
        approved = cli("lead", "approve", run, "--reason", "ok")
        assert approved.returncode == 0, approved.stderr
        assert "status: resolved" in approved.stdout
    assert refunds(home) == 1
    assert not (tmp_path / "elsewhere").exists()  # the CLI never opened local stores


def test_an_edit_is_gated_and_verified_again_and_the_old_digest_is_stale(
        api: TestClient, who: dict[str, dict[str, str]], home: Path) -> None:
    view = held_run(api, who)
    decide = f"/api/v1/runs/{view['run_id']}/decision"
    old = view["held"]["digest"]
    edited = api.post(decide, json={"action": "edit", "held_digest": old,
                                    "args": {"amount_cents": 9000}}, headers=who["lead"]).json()
    assert edited["status"] == "waiting_approval"  # still over $50: held again
    assert edited["held"]["args"]["amount_cents"] == 9000
    assert edited["held"]["origin"] == "human_edit" and edited["held"]["verdict"]["ok"]
    assert edited["held"]["digest"] != old
    # An approval of what was held before the edit must not approve the edited call.
    assert "no longer holds" in error_of(api.post(decide, json={"action": "approve",
                                                                 "held_digest": old},
                                                  headers=who["lead"]), 409)
    assert refunds(home) == 0
    done = api.post(decide, json={"action": "approve", "held_digest": edited["held"]["digest"]},
                    headers=who["lead"]).json()
    assert done["status"] == "resolved" and refunds(home) == 1


def test_serve_refuses_stores_not_upgraded_before_listening(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`signoff serve` on PostgreSQL whose schemas are not upgraded, or one of them behind:
    one line, exit 3, and the server is never started (no port bound)."""
    listened: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: listened.append(args))
    with pg_schemas() as (url, prefix):
        monkeypatch.setenv("SIGNOFF_DATABASE_URL", url)
        monkeypatch.setenv("SIGNOFF_DB_SCHEMA_PREFIX", prefix)
        fresh = CliRunner().invoke(app, ["serve", "--port", "8799"])
        assert fresh.exit_code == 3 and fresh.stdout == ""
        assert fresh.stderr.splitlines() == [
            f"error: {url} holds the control schema at version 0, this signoff needs 1: "
            "run `signoff db upgrade`"]
        backend = PostgresBackend(url, schema_prefix=prefix)
        try:
            backend.upgrade()
            with backend.raw_connection("traces") as raw:
                raw.execute("UPDATE signoff_schema SET version = version - 1")
        finally:
            backend.close()
        want = SCHEMAS["traces"].version("postgres")
        behind = CliRunner().invoke(app, ["serve", "--port", "8799"])
        assert behind.exit_code == 3 and behind.stdout == ""
        assert behind.stderr.splitlines() == [
            f"error: {url} holds stores this signoff cannot use: traces v{want - 1} (needs "
            f"v{want}): run `signoff db upgrade`"]
    assert listened == []


def test_a_database_failure_is_one_503_line(api: TestClient, who: dict[str, dict[str, str]],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A database that fails under a request (here PostgreSQL's server going away, its error
    running on over lines) is a 503 with the database's first line, never a traceback."""
    psycopg = pytest.importorskip("psycopg")

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise psycopg.OperationalError("server closed the connection unexpectedly\n\tThis "
                                       "probably means the server terminated abnormally")

    monkeypatch.setattr(api.app.state.service.runner.runs, "list", gone)  # type: ignore[attr-defined]
    assert error_of(api.get("/api/v1/runs", headers=who["lead"]), 503) == \
        "database error: server closed the connection unexpectedly"
