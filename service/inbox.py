"""The approval inbox: server-rendered pages with plain forms (no scripts, no build step).

Signing in trades a bearer token for a session: an HttpOnly, SameSite=Strict cookie naming a
row of the control database's session table (the browser never holds the token). Every form
carries the session's CSRF token; the sign-in form a double-submit one.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from checkpoints.accounts import Principal, Unauthenticated
from checkpoints.runs import RunRecord
from graph.control import explain_lines
from graph.errors import SignoffError
from observability.audit import verify_audit
from service.core import Service, decide_run, run_view, tool_fields, visible_run
from service.errors import ApiError, BadRequest, Forbidden, Unprocessable, from_library

SESSION_COOKIE = "signoff_session"
LOGIN_CSRF_COOKIE = "signoff_login_csrf"
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(prefix="/inbox", include_in_schema=False)


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _session(request: Request) -> tuple[Principal, str]:
    service = _service(request)
    with service.lock:
        return service.accounts.session(request.cookies.get(SESSION_COOKIE))


def _check_csrf(expected: str, given: str) -> None:
    if not given or not secrets.compare_digest(expected, given):
        raise Forbidden("the form's CSRF token does not match this session; reload the page")


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status)


async def error_page(request: Request, exc: StarletteHTTPException) -> Response:
    """An error on an inbox page: sign in again on 401, otherwise a page saying what failed."""
    if exc.status_code == 401 and not request.url.path.startswith("/inbox/login"):
        return RedirectResponse("/inbox/login", status_code=303)
    return _page(request, "error.html", status=exc.status_code, message=str(exc.detail),
                 principal=None, csrf="")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    csrf = secrets.token_urlsafe(24)
    response = _page(request, "login.html", principal=None, csrf=csrf, error=None)
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                        path="/inbox/login",
                        secure=_service(request).settings.secure_cookies)
    return response


@router.post("/login")
def login(request: Request, token: Annotated[str, Form(max_length=200)],
          csrf: Annotated[str, Form(max_length=200)]) -> Response:
    _check_csrf(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf)
    service = _service(request)
    try:
        with service.lock:
            principal = service.accounts.authenticate(token.strip())
            session = service.accounts.open_session(principal)
    except Unauthenticated as exc:
        return _page(request, "login.html", status=401, principal=None, csrf=csrf,
                     error=f"sign-in refused: {exc}")
    response = RedirectResponse("/inbox", status_code=303)
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/",
                        secure=service.settings.secure_cookies)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/inbox/login")
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=200)]) -> Response:
    _principal, expected = _session(request)
    _check_csrf(expected, csrf)
    service = _service(request)
    with service.lock:
        service.accounts.close_session(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/inbox/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("", response_class=HTMLResponse)
def pending(request: Request) -> Response:
    """The held calls of the principal's tenants, newest first."""
    principal, csrf = _session(request)
    service = _service(request)
    with service.lock:
        records = service.runner.runs.list(status="waiting_approval", limit=200,
                                           tenants=list(principal.tenants))
        holds = [run_view(service, principal, r) for r in records]
        recent = [run_view(service, principal, r) for r in service.runner.runs.list(
            limit=20, tenants=list(principal.tenants)) if r.status != "waiting_approval"]
    return _page(request, "inbox.html", principal=principal, csrf=csrf, holds=holds,
                 recent=recent)


def _run_page(request: Request, service: Service, principal: Principal, csrf: str,
              record: RunRecord, *, notice: str | None = None, error: str | None = None,
              status: int = 200) -> HTMLResponse:
    view = run_view(service, principal, record, detail=True)
    audit = verify_audit(service.runner.backend)
    return _page(request, "run.html", status=status, principal=principal, csrf=csrf, run=view,
                 fields=tool_fields(service, record) if view.can_decide else [],
                 timeline=explain_lines(service.runner, record.run_id), audit=audit,
                 notice=notice, error=error, dumps=json.dumps)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> Response:
    principal, csrf = _session(request)
    service = _service(request)
    with service.lock:
        record = visible_run(service, principal, run_id)
        return _run_page(request, service, principal, csrf, record)


def _edited_args(fields: list[dict[str, Any]], form: dict[str, str]) -> dict[str, Any]:
    """The edit form's values typed by the tool's schema (the runner validates them fully)."""
    args: dict[str, Any] = {}
    for field in fields:
        raw = form.get(f"arg.{field['name']}", "").strip()
        if raw == "" and not field["required"]:
            continue
        if field["type"] == "integer":
            try:
                args[field["name"]] = int(raw)
            except ValueError:
                raise Unprocessable(f"{field['name']} must be a whole number") from None
        elif field["type"] == "number":
            try:
                args[field["name"]] = float(raw)
            except ValueError:
                raise Unprocessable(f"{field['name']} must be a number") from None
        elif field["type"] == "boolean":
            args[field["name"]] = raw == "on"
        else:
            args[field["name"]] = raw
    return args


@router.post("/runs/{run_id}/decide", response_class=HTMLResponse)
async def decide(request: Request, run_id: str) -> Response:
    principal, expected = await run_in_threadpool(_session, request)
    form = {key: value for key, value in (await request.form()).items()
            if isinstance(value, str)}
    _check_csrf(expected, form.get("csrf", ""))
    action = form.get("action", "")
    if action not in ("approve", "reject", "edit"):
        raise BadRequest("choose approve, reject or edit")
    service = _service(request)

    def decide_now() -> Response:
        with service.lock:
            record = visible_run(service, principal, run_id)
            try:
                args = (_edited_args(tool_fields(service, record), form) if action == "edit"
                        else None)
                after = decide_run(service, principal, run_id, action=action,
                                   reason=form.get("reason", ""), args=args,
                                   held=form.get("held", ""))
            except (SignoffError, ApiError) as exc:
                error = exc if isinstance(exc, ApiError) else from_library(exc)
                return _run_page(request, service, principal, expected,
                                 service.runner.runs.get(run_id), error=str(error.detail),
                                 status=error.status_code)
            done = {"approve": "approved", "reject": "rejected", "edit": "edited"}[action]
            return _run_page(request, service, principal, expected, after,
                             notice=f"{done} by {principal.email}: the run is now {after.status}")

    # A decision drives the run; off the event loop, as the API's sync routes are.
    return await run_in_threadpool(decide_now)
