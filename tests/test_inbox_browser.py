"""The approval inbox in a real browser: Debian's Chromium, driven headless by Playwright.

Screenshots go to a temporary directory; with SIGNOFF_WRITE_SCREENSHOTS=1 they are written to
docs/screenshots/, where docs/service.md shows them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service_support import build_app, refunds, served, tokens

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(apt-get install chromium; .ci/run installs it)")
DOCS_SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("SIGNOFF_WRITE_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SHOTS
    return tmp_path


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def start_hold(url: str, token: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        response = client.post("/api/v1/runs", json={"ticket_id": "TKT-1002"},
                               headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return dict(response.json())


def sign_in(browser: Any, url: str, token: str) -> Any:
    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    page.goto(f"{url}/inbox")
    assert page.url.endswith("/inbox/login")  # not signed in yet
    page.fill("input[name=token]", token)
    page.click("form[action='/inbox/login'] button")
    page.wait_for_url(f"{url}/inbox")
    return page


def test_approver_signs_in_approves_rejects_and_sees_a_red_edit(
        home: Path, browser: Any, shots: Path) -> None:
    secrets = tokens(home)
    with served(build_app(home)) as url:
        approve_me, reject_me, edit_me = (start_hold(url, secrets["agent"]) for _ in range(3))
        page = sign_in(browser, url, secrets["lead"])

        # The session is an HttpOnly, SameSite=Strict cookie; the token is nowhere in the page.
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert cookies["signoff_session"]["httpOnly"] is True
        assert cookies["signoff_session"]["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""
        assert page.evaluate("window.localStorage.length") == 0

        holds = page.locator(".hold")
        assert holds.count() == 3
        assert "TKT-1002" in holds.first.inner_text()
        assert "create_refund_request" in holds.first.inner_text()
        assert "refund.needs_approval" in holds.first.inner_text()
        page.screenshot(path=str(shots / "inbox.png"), full_page=True)

        page.click(f".hold[data-run='{approve_me['run_id']}'] a >> nth=0")
        assert "order ORD-10002 belongs to CUS-0002" in page.inner_text("#held")
        assert "second model" in page.inner_text("#held")
        assert "get_order" in page.inner_text("body")  # the evidence read
        assert "model call(s)" in page.inner_text("#spent")
        assert "intact" in page.inner_text("#audit")
        page.screenshot(path=str(shots / "inbox-run.png"), full_page=True)
        page.fill("#approve-form input[name=reason]", "receipt checked")
        page.click("#approve")
        page.wait_for_selector("#notice")
        assert page.inner_text("#status") == "resolved"
        assert "lead@acme.example" in page.inner_text("#timeline")
        assert refunds(home) == 1

        page.goto(f"{url}/inbox/runs/{reject_me['run_id']}")
        page.fill("#reject-form input[name=reason]", "no receipt attached")
        page.click("#reject")
        page.wait_for_selector("#notice")
        assert page.inner_text("#status") == "rejected"
        assert "no receipt attached" in page.inner_text("#reason")

        page.goto(f"{url}/inbox/runs/{edit_me['run_id']}")
        page.fill("#edit-form input[name='arg.amount_cents']", "60000")
        page.click("#edit")
        page.wait_for_selector("#notice")
        assert page.inner_text("#status") == "blocked"
        assert "refund.over_ceiling" in page.inner_text("#reason")
        assert page.locator("#approve").count() == 0
        page.screenshot(path=str(shots / "inbox-edit-red.png"), full_page=True)
        assert refunds(home) == 1
        page.context.close()


def test_an_approver_without_the_role_sees_no_decide_buttons(home: Path, browser: Any) -> None:
    secrets = tokens(home)
    with served(build_app(home)) as url:
        hold = start_hold(url, secrets["agent"])
        page = sign_in(browser, url, secrets["finance"])
        assert "you cannot decide this" in page.inner_text(".hold")
        page.goto(f"{url}/inbox/runs/{hold['run_id']}")
        assert page.locator("#approve, #reject, #edit").count() == 0
        assert "support_lead" in page.inner_text("#cannot-decide")
        with httpx.Client(base_url=url, trust_env=False) as client:
            refused = client.post(f"/api/v1/runs/{hold['run_id']}/decision",
                                  json={"action": "approve",
                                        "held_digest": hold["held"]["digest"]},
                                  headers={"Authorization": f"Bearer {secrets['finance']}"})
        assert refused.status_code == 403 and "support_lead" in refused.json()["error"]
        page.context.close()
    assert refunds(home) == 0
