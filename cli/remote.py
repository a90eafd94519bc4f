"""The CLI over the service: with SIGNOFF_URL and SIGNOFF_TOKEN set, `status`, `runs`,
`approve`, `reject` and `edit` call the API instead of opening the stores, and the decider is
whoever the token names (so `--as` is not taken)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from graph.errors import SignoffError

if TYPE_CHECKING:  # httpx loads when a command calls a service, not for --help
    import httpx


class Remote:
    """A signoff service at `url`, called with a bearer token."""

    def __init__(self, url: str, token: str, transport: httpx.BaseTransport | None = None
                 ) -> None:
        import httpx

        self.client = httpx.Client(base_url=url.rstrip("/") + "/api/v1", timeout=120,
                                   headers={"Authorization": f"Bearer {token}"},
                                   transport=transport)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise SignoffError(f"cannot reach the service at {self.client.base_url}: "
                               f"{exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            raise SignoffError(f"{message or response.reason_phrase} "
                               f"(HTTP {response.status_code})")
        return body

    def status(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/runs/{run_id}")
        return result

    def runs(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        result: list[dict[str, Any]] = self.call("GET", "/runs", params=params)["runs"]
        return result

    def decide(self, run_id: str, action: str, *, reason: str, args: dict[str, Any] | None,
               held: str | None) -> dict[str, Any]:
        """Decide the held call `held` names; without it, the call the run holds now."""
        if held is None:
            current = (self.status(run_id).get("held") or {}).get("digest")
            held = current or "none"
        body: dict[str, Any] = {"action": action, "reason": reason, "held_digest": held}
        if args is not None:
            body["args"] = args
        result: dict[str, Any] = self.call("POST", f"/runs/{run_id}/decision", json=body)
        return result


def remote_from_env() -> Remote | None:
    """The service the environment names, or None for the local stores (trusted-local)."""
    url, token = os.environ.get("SIGNOFF_URL"), os.environ.get("SIGNOFF_TOKEN")
    if not url and not token:
        return None
    if not url or not token:
        raise SignoffError("set both SIGNOFF_URL and SIGNOFF_TOKEN to use a signoff service, "
                           "or neither to use the local stores")
    return Remote(url, token)
