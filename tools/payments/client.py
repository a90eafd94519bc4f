"""The payments API client the support tools use (httpx), its settings and its secrets file.

The key is read from its secrets file (or the environment) on every call, so a rotation
(`signoff credentials rotate payments`) reaches runs in flight without a restart; a call
answered 401 reads it again once, in case it was rotated between the read and the call.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tools.base import ToolError, TransientToolError, UnconfirmedEffect

ENV_URL = "SIGNOFF_PAYMENTS_URL"
ENV_KEY_FILE = "SIGNOFF_PAYMENTS_KEY_FILE"
ENV_KEY = "SIGNOFF_PAYMENTS_KEY"
ENV_TIMEOUT = "SIGNOFF_PAYMENTS_TIMEOUT_S"
ENV_NO_KEY = "SIGNOFF_PAYMENTS_UNSAFE_NO_KEY"
"""Set to 1 to NOT forward idempotency keys: the crash harness's control, which shows the
duplicates a tool that ignores the rule causes. Never set it in production."""


@dataclass(frozen=True)
class PaymentsSettings:
    """Where the payments API is and which credential the refund tool presents to it."""

    url: str
    """Base URL, e.g. http://127.0.0.1:8766."""
    key_file: Path | None = None
    """Secrets file holding the bearer key (one line); read on every call."""
    key: str | None = None
    """The key itself, when it comes from the environment instead of a file."""
    timeout_s: float = 10.0
    forward_key: bool = True
    """False only for the crash harness's control (ENV_NO_KEY)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PaymentsSettings | None:
        """The settings SIGNOFF_PAYMENTS_* describe; None when no URL is set (local mode)."""
        url = env.get(ENV_URL, "").strip()
        if not url:
            return None
        try:
            timeout = float(env.get(ENV_TIMEOUT) or 10.0)
        except ValueError:
            timeout = -1.0
        key_file = env.get(ENV_KEY_FILE, "").strip()
        return cls(url=url.rstrip("/"), key_file=Path(key_file).expanduser() if key_file else None,
                   key=env.get(ENV_KEY) or None, timeout_s=timeout,
                   forward_key=env.get(ENV_NO_KEY, "") not in ("1", "true", "yes"))

    def problem(self) -> str | None:
        """Why these settings cannot work, or None."""
        if not self.url.startswith(("http://", "https://")):
            return f"{ENV_URL} must be an http:// or https:// URL, not {self.url!r}"
        if not self.timeout_s > 0:
            return f"{ENV_TIMEOUT} must be a positive number of seconds"
        if self.key_file is None and not self.key:
            return f"no payments key: set {ENV_KEY_FILE} (a secrets file) or {ENV_KEY}"
        return None

    def current_key(self) -> str:
        """The key as it is now; UnconfirmedEffect (the run stops for a human) if none."""
        if self.key_file is not None:
            try:
                secret = read_secret(self.key_file)
            except OSError as exc:
                raise UnconfirmedEffect(f"cannot read the payments key file {self.key_file}: "
                                        f"{exc.strerror}") from None
            if not secret:
                raise UnconfirmedEffect(f"the payments key file {self.key_file} is empty")
            return secret
        if not self.key:
            raise UnconfirmedEffect(f"no payments key: set {ENV_KEY_FILE} or {ENV_KEY}")
        return self.key


def read_secret(path: Path) -> str:
    return path.read_text().strip()


def write_secret(path: Path, secret: str) -> None:
    """Replace the secrets file atomically (readers see the old key or the new one, never a
    half-written file), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise UnconfirmedEffect(f"the payments API answered {what} with something that is not "
                                f"JSON (HTTP {response.status_code})") from None
    if not isinstance(body, dict):
        raise UnconfirmedEffect(f"the payments API answered {what} with JSON that is not an "
                                "object")
    return body


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase or "no message"


class PaymentsClient:
    """Refunds at the payments API. Outcomes the caller cannot know (timeouts, dropped
    connections, 5xx) raise TransientToolError; refusals ToolError; answers that do not
    make sense UnconfirmedEffect."""

    def __init__(self, settings: PaymentsSettings,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._transport = transport
        self._tls: ssl.SSLContext | None = None

    def _http(self) -> httpx.Client:
        # A client (and connection) per call: registries are built often and outlive no one
        # who would close them. The TLS context is what costs (tens of ms): built once, and
        # only for https (a plain-http URL, like the loopback sample service, uses no TLS).
        verify: ssl.SSLContext | bool = False
        if self.settings.url.startswith("https://"):
            if self._tls is None:
                self._tls = ssl.create_default_context()
            verify = self._tls
        return httpx.Client(base_url=self.settings.url, transport=self._transport,
                            timeout=self.settings.timeout_s, verify=verify)

    def _request(self, method: str, path: str, *, json: Any = None,
                 params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                 on_headers: Callable[[], None] | None = None) -> httpx.Response:
        problem = self.settings.problem()
        if problem:
            raise UnconfirmedEffect(problem)
        for attempt in (1, 2):
            key = self.settings.current_key()
            try:
                with self._http() as http, http.stream(
                        method, path, json=json, params=params,
                        headers={**(headers or {}), "Authorization": f"Bearer {key}"}
                ) as response:
                    if on_headers is not None:
                        on_headers()  # the API has answered (so committed), body not read yet
                    response.read()
            except httpx.TimeoutException:
                raise TransientToolError("the payments API did not answer in time") from None
            except httpx.TransportError as exc:
                raise TransientToolError(f"the payments API connection failed: "
                                         f"{type(exc).__name__}") from None
            if response.status_code == 401 and attempt == 1 \
                    and self.settings.current_key() != key:
                continue  # rotated between reading the key and the call: once more
            return response
        return response

    def create_refund(self, body: dict[str, Any], idempotency_key: str | None,
                      on_headers: Callable[[], None] | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self._request("POST", "/v1/refunds", json=body, headers=headers,
                                 on_headers=on_headers)
        return self._record(response, "the refund")

    def refund_by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        response = self._request("GET", "/v1/refunds",
                                 params={"idempotency_key": idempotency_key})
        if response.status_code == 404:
            return None
        return self._record(response, "the refund lookup")

    def _record(self, response: httpx.Response, what: str) -> dict[str, Any]:
        status = response.status_code
        if status >= 500:
            raise TransientToolError(f"the payments API failed ({status}): {_message(response)}")
        if status == 409:
            raise UnconfirmedEffect(f"the payments API refused {what} as a conflict: "
                                    f"{_message(response)}")
        if status != 200:
            raise ToolError(f"the payments API refused {what} ({status}): {_message(response)}")
        return _json(response, what)

    # Key rotation ----------------------------------------------------------------------

    def roll_key(self) -> dict[str, Any]:
        """A new key with the current key's scopes (the current one stays valid)."""
        response = self._request("POST", "/v1/keys/roll", json={})
        body = _json(response, "the key roll") if response.status_code == 200 else None
        if body is None or not isinstance(body.get("secret"), str) or not body["secret"]:
            raise ToolError(f"the payments API did not issue a key ({response.status_code}): "
                            f"{_message(response)}")
        return body

    def revoke_key(self, secret: str) -> None:
        """Revoke the key `secret` (the API revokes the key that makes the call)."""
        try:
            with self._http() as http:
                response = http.delete("/v1/keys/current",
                                       headers={"Authorization": f"Bearer {secret}"})
        except httpx.HTTPError as exc:
            raise ToolError(f"the payments API connection failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ToolError(f"the payments API did not revoke the key "
                            f"({response.status_code}): {_message(response)}")


@dataclass(frozen=True)
class Rotation:
    old_key_id: str | None
    new_key_id: str


def rotate_key(client: PaymentsClient) -> Rotation:
    """Issue a new key at the API, switch the secrets file to it, then revoke the old key.

    In that order a run in flight never holds a dead key for long: a call made with the old
    key before the revocation succeeds, one made after it is answered 401, reads the file
    again and is retried with the new key.
    """
    settings = client.settings
    if settings.key_file is None:
        raise ToolError(f"rotation needs the key in a secrets file ({ENV_KEY_FILE}); a key "
                        f"from {ENV_KEY} cannot be switched from here")
    old = settings.current_key()
    issued = client.roll_key()
    write_secret(settings.key_file, issued["secret"])
    response_id = issued.get("id")
    client.revoke_key(old)
    return Rotation(old_key_id=None, new_key_id=str(response_id))


ENV_KEY_MAX_AGE = "SIGNOFF_PAYMENTS_KEY_MAX_AGE_DAYS"
DEFAULT_KEY_MAX_AGE_DAYS = 90.0


def key_rotation_check(env: Mapping[str, str], now: float) -> tuple[bool, str]:
    """The release gate's "key rotation practiced": (ok, detail). The key's age is its
    secrets file's age (rotation rewrites it); a key from the environment has no known age."""
    settings = PaymentsSettings.from_env(env)
    if settings is None:
        return True, f"no external payments API ({ENV_URL} unset): no key to rotate"
    try:
        max_days = float(env.get(ENV_KEY_MAX_AGE) or DEFAULT_KEY_MAX_AGE_DAYS)
    except ValueError:
        return False, f"{ENV_KEY_MAX_AGE} must be a number of days"
    if settings.key_file is None:
        return False, (f"the payments key comes from {ENV_KEY}: its age is unknown and it "
                       f"cannot be rotated; keep it in a secrets file ({ENV_KEY_FILE})")
    try:
        age_days = (now - settings.key_file.stat().st_mtime) / 86400
    except OSError as exc:
        return False, f"cannot read the payments key file {settings.key_file}: {exc.strerror}"
    detail = (f"payments key last rotated {age_days:.1f} day(s) ago (limit {max_days:g}; "
              "signoff credentials rotate payments)")
    return age_days <= max_days, detail
