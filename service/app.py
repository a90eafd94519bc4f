"""`create_app(settings)`: the FastAPI app serving the REST API and the approval inbox over one
runner. Errors leave as {"error": "one line"} with the status code service.errors chose."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from graph.errors import SignoffError
from observability.db import StoreError, database_errors
from service import api, inbox
from service.core import Service, ServiceSettings
from service.errors import from_library

API_TITLE = "signoff"
API_VERSION = "1"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


def _error(status: int, message: str,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status,
                        headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    more = len(exc.errors()) - 1
    return (f"invalid request: {where or 'body'}: {first.get('msg', 'invalid')}"
            + (f" (and {more} more)" if more > 0 else ""))


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service on `settings.home`: the same stores the CLI uses."""
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title=API_TITLE, version=API_VERSION, lifespan=lifespan,
                  openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs",
                  redoc_url=None,
                  description="Start runs, see what they hold, decide with a bearer token. "
                              "See docs/service.md.")
    app.state.service = service

    @app.exception_handler(SignoffError)
    async def library_error(request: Request, exc: SignoffError) -> Response:
        error = from_library(exc)
        if request.url.path.startswith("/inbox"):
            return await inbox.error_page(request, error)
        return _error(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/inbox"):
            return await inbox.error_page(request, exc)
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error(422, _validation_message(exc))

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> Response:
        return _error(400, str(exc))

    async def database_error(request: Request, exc: Exception) -> Response:
        # The database's own first line (a PostgreSQL error runs on with DETAIL and HINT).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _error(503, f"database error: {first}")

    for kind in database_errors():  # SQLite's, and PostgreSQL's when psycopg is installed
        app.add_exception_handler(kind, database_error)

    @app.middleware("http")
    async def security_headers(request: Request,
                               call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.include_router(api.router)
    app.include_router(inbox.router)
    return app
