"""The service's errors: HTTPException subclasses, each rendered as {"error": "one line"}.

Library errors (graph.errors.SignoffError and its kinds) are mapped to them in one place,
`from_library`, so a route never picks a status code for a library failure itself.
"""

from __future__ import annotations

from fastapi import HTTPException

from checkpoints.accounts import Unauthenticated
from graph.errors import BadDecision, NotWaiting, RunBusy, RunNotFound, SignoffError, StaleDecision


class ApiError(HTTPException):
    status = 400

    def __init__(self, message: str) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        super().__init__(status_code=self.status, detail=message, headers=headers)


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Unprocessable(ApiError):
    status = 422


_BY_KIND: tuple[tuple[type[SignoffError], type[ApiError]], ...] = (
    (Unauthenticated, Unauthorized),
    (RunNotFound, NotFound),
    (StaleDecision, Conflict),
    (NotWaiting, Conflict),
    (RunBusy, Conflict),
    (BadDecision, Unprocessable),
)


def from_library(exc: SignoffError) -> ApiError:
    """The API error for a library error (the message is kept, on one line)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    for kind, error in _BY_KIND:
        if isinstance(exc, kind):
            return error(message)
    return BadRequest(message)
