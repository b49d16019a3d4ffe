"""The CLI's HTTP client of the read and control APIs: sends the token, turns 4xx into messages."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from cli.google_tokens import NoCredentials
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


# What an API answers when a dependency is down or it is overloaded: worth waiting out.
OUTAGE_STATUSES = (502, 503, 504)


class Unavailable(CommandError):
    """hekaton answered 502/503/504: it could not do it now (a dependency down), not a refusal."""

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
    """One API call with the bearer token; the decoded JSON, or Refusal/Unavailable/CommandError."""
    base = _url(target, api)
    try:
        token = target.token(base)
    except NoCredentials as exc:
        raise CommandError(f"cannot call the {api} API at {base}: {exc}") from None
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
        raise CommandError(
            f"{api} API at {base} unreachable ({type(exc).__name__}: {exc}): check the URL "
            "(--status-url/--control-url, or the context's project and region) and your network"
        ) from exc
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        ours = isinstance(data, dict) and "error" in data
        message = str(data["error"]) if ours else _text(response)
        if response.status_code in (401, 403) and target.google is not None:
            message = access_hint(response.status_code, message, base, api, ours=ours)
        elif response.status_code == 401 and not token:
            message = f"{message} ({NO_TOKEN})"
        if response.status_code in OUTAGE_STATUSES:
            # Not hekaton saying no: it could not answer (Firestore or the cluster unreachable).
            raise Unavailable(
                response.status_code,
                f"the {api} API at {base} could not answer ({response.status_code}): {message}",
            )
        if response.status_code >= 500:
            raise CommandError(
                f"the {api} API at {base} failed ({response.status_code}): {message}; that is a "
                "fault, not an outage: the function's log has the details"
            )
        raise Refusal(response.status_code, message)
    return data if data is not None else {"error": response.text[:500]}


def _text(response: httpx.Response) -> str:
    """A non-JSON error body (Google's front end answers HTML) as one short line."""
    text = " ".join(response.text.split())
    return f"HTTP {response.status_code}: {text[:300]}" if text else f"HTTP {response.status_code}"


def access_hint(status: int, message: str, base: str, api: str, *, ours: bool) -> str:
    """What a 401/403 from a GCP deployment means and which grant is missing.

    Without `ours` the answer came from Cloud Run's front end, before hekaton saw the call (no or a
    bad token, or no `roles/run.invoker`); with it, hekaton's own check refused (audience, issuer,
    or a principal outside the allowed patterns).
    """
    function = (
        base.rstrip("/").rsplit("/", 1)[-1] or f"hekaton-{'status' if api == 'read' else api}"
    )
    invoker = (
        f"`roles/run.invoker` on the Cloud Run service {function} (gcloud functions "
        f"add-invoker-policy-binding {function} --region REGION --member user:YOU)"
    )
    allowed = "your account in the deployment's allowed principals (deploy.sh --allowed-principals)"
    if status == 403 and not ours:
        return f"{message}: Cloud Run refused the call: your account needs {invoker}"
    if status == 403:
        return f"{message}: the {api} API needs {allowed}"
    if not ours:
        return (
            f"{message}: Cloud Run did not accept the ID token (expired, or for another "
            f"audience than {base}): log in again (`gcloud auth login`), and check you have {invoker}"
        )
    return (
        f"{message}: the {api} API did not accept the ID token; it accepts the audiences "
        f"deploy.sh sets (HEKATON_AUTH_AUDIENCES: {base} and gcloud's user-token audience)"
    )


def fetch(target: Target, path: str) -> Any:
    """GET a document from the read API."""
    return request(target, "GET", path)


def control(
    target: Target, method: str, path: str, body: Any = None, *, key: str | None = None
) -> Any:
    """A control API call (with an Idempotency-Key, fresh unless given: retries reuse it)."""
    return request(target, method, path, api="control", body=body, key=key)
