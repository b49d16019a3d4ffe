"""The CLI's HTTP client of the read and control APIs: sends the token, turns 4xx into messages."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from cli.target import Target

NO_TOKEN = (
    "no token to send: set HEKATON_TOKEN (in GCP: a Google ID token for the function's URL), or "
    "restart the local stack (`hekaton down; hekaton up --detach`) so it has a signing key"
)


class CommandError(RuntimeError):
    """A command failed in a way the user can fix; the message says how."""


class Refusal(CommandError):
    """hekaton answered and refused (4xx): the reason is hekaton's own."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _url(target: Target, api: str) -> str:
    url = target.status_url if api == "read" else target.control_url
    if not url:
        variable = "HEKATON_STATUS_URL" if api == "read" else "HEKATON_CONTROL_URL"
        raise CommandError(f"no {api} API URL: set {variable} or start the local stack")
    return url.rstrip("/")


def request(
    target: Target,
    method: str,
    path: str,
    *,
    api: str = "read",
    body: Any = None,
    key: str | None = None,
    timeout: float = 30.0,
) -> Any:
    """One API call with the bearer token; the decoded JSON, or Refusal/CommandError."""
    base = _url(target, api)
    token = target.token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if api == "control":
        headers["Idempotency-Key"] = key or uuid.uuid4().hex
    try:
        response = httpx.request(
            method,
            base + path,
            headers=headers,
            content=json.dumps(body).encode() if body is not None else None,
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise CommandError(f"{api} API at {base} unreachable: {exc}") from exc
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text[:500]}
    if response.status_code >= 400:
        message = data.get("error", response.text) if isinstance(data, dict) else response.text
        if response.status_code == 401 and not token:
            message = f"{message} ({NO_TOKEN})"
        raise Refusal(response.status_code, str(message))
    return data


def fetch(target: Target, path: str) -> Any:
    """GET a document from the read API."""
    return request(target, "GET", path)


def control(
    target: Target, method: str, path: str, body: Any = None, *, key: str | None = None
) -> Any:
    """A control API call (with an Idempotency-Key, fresh unless given: retries reuse it)."""
    return request(target, method, path, api="control", body=body, key=key)
