"""The inbox's forms without a browser: sign-in, the session cookie, CSRF on every form; the
approval on each backend of the grid."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from graph.runner import Home
from tests.service_support import accounts_of, as_deployed, build_app, refunds, tokens


@contextmanager
def inbox_on(where: Home | Path, serve_as: Home | None = None
             ) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app on `where`'s stores, and a token per user of tests.service_support.USERS."""
    secrets = tokens(where)
    with TestClient(build_app(where, serve_as=serve_as), follow_redirects=False) as client:
        yield client, secrets


@pytest.fixture
def inbox(home: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with inbox_on(home) as client_and_secrets:
        yield client_and_secrets


@pytest.fixture
def grid_inbox(backend_home: Home) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """`inbox` on each backend of the grid (tests/conftest.py `backend_home`), the app
    connected as a deployment's."""
    with inbox_on(backend_home, as_deployed(backend_home)) as client_and_secrets:
        yield client_and_secrets


def sign_in(client: TestClient, token: str) -> str:
    form = client.get("/inbox/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    signed = client.post("/inbox/login", data={"token": token, "csrf": csrf})
    assert signed.status_code == 303, signed.text
    cookie = signed.headers["set-cookie"]
    assert "signoff_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie.replace("Strict", "strict")
    page = client.get("/inbox")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def test_pages_need_a_session(inbox: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = inbox
    assert client.get("/inbox").headers["location"] == "/inbox/login"
    refused = client.post("/inbox/login", data={"token": "so_wrong", "csrf": "x"})
    assert refused.status_code == 403  # no CSRF cookie yet: the form did not come from us
    client.get("/inbox/login")
    form = client.get("/inbox/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    wrong = client.post("/inbox/login", data={"token": "so_wrong", "csrf": csrf})
    assert wrong.status_code == 401 and "sign-in refused: unknown token" in wrong.text


def test_a_decision_without_the_sessions_csrf_token_changes_nothing(
        grid_inbox: tuple[TestClient, dict[str, str]], backend_home: Home) -> None:
    """Sign in, approve from the run's page: one refund on the backend, the audit chain shown
    intact; a forged CSRF token before it changed nothing."""
    client, secrets = grid_inbox
    run = client.post("/api/v1/runs", json={"ticket_id": "TKT-1002"},
                      headers={"Authorization": f"Bearer {secrets['agent']}"}).json()
    csrf = sign_in(client, secrets["lead"])
    form = {"action": "approve", "held": run["held"]["digest"], "reason": ""}
    forged = client.post(f"/inbox/runs/{run['run_id']}/decide", data={**form, "csrf": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert refunds(backend_home) == 0
    page = client.get(f"/inbox/runs/{run['run_id']}")
    assert run["held"]["digest"] in page.text and 'id="audit">intact' in page.text
    done = client.post(f"/inbox/runs/{run['run_id']}/decide", data={**form, "csrf": csrf})
    assert done.status_code == 200 and 'id="status">resolved<' in done.text
    assert "approved by lead@acme.example" in done.text and 'id="audit">intact' in done.text
    assert refunds(backend_home) == 1


def test_revoking_the_token_ends_the_session(inbox: tuple[TestClient, dict[str, str]],
                                             home: Path) -> None:
    client, secrets = inbox
    sign_in(client, secrets["lead"])
    assert client.get("/inbox").status_code == 200
    with accounts_of(home) as accounts:
        for token in accounts.tokens():
            if token["email"] == "lead@acme.example":
                accounts.revoke_token(str(token["token_id"]))
    assert client.get("/inbox").headers["location"] == "/inbox/login"


def test_another_tenants_run_page_is_not_found(inbox: tuple[TestClient, dict[str, str]]) -> None:
    client, secrets = inbox
    run = client.post("/api/v1/runs", json={"ticket_id": "TKT-1002"},
                      headers={"Authorization": f"Bearer {secrets['agent']}"}).json()
    sign_in(client, secrets["globex"])
    page = client.get(f"/inbox/runs/{run['run_id']}")
    assert page.status_code == 404 and "no run" in page.text
    assert "TKT-1002" not in client.get("/inbox").text
