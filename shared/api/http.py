"""Framework-free HTTP request/response types and the guards every body and id goes through."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from events.pubsub import DEAD_LETTER_ID
from events.steps import ROLLOUT_ID, SERVICE_NAME
from shared.commands import Refused

MAX_BODY = 256 * 1024  # bytes: a service spec with smoke requests fits many times over
MAX_DEPTH = 32  # nesting of a JSON body
MAX_STRING = 64 * 1024  # characters of any one string in a body
_SERVICE = SERVICE_NAME
_ROLLOUT = ROLLOUT_ID


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request: method, path, query, lower-cased headers, raw body."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def parts(self) -> list[str]:
        """The path's segments."""
        return [p for p in self.path.split("/") if p]


@dataclass(frozen=True)
class ApiResponse:
    """A JSON answer (or, with a bytes body, those bytes as they are: the dashboard's HTML)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        """The JSON body (a bytes body as it is)."""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, indent=2, default=str).encode()


def error(status: int, message: str, **extra: Any) -> ApiResponse:
    """`{"error": message}` with a status."""
    return ApiResponse(status, {"error": message, **extra})


def json_body(request: ApiRequest, allowed: frozenset[str]) -> dict[str, Any]:
    """The body as a JSON object with only `allowed` keys; Refused("invalid") saying what is wrong."""
    if len(request.body) > MAX_BODY:
        raise Refused("invalid", f"the body is larger than {MAX_BODY} bytes")
    if not request.body.strip():
        return {}
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(
            "invalid", f"the body is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise Refused("invalid", f"the body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise Refused("invalid", f"the body is not JSON: {exc}") from None
    _check_shape(data, 0)
    if not isinstance(data, dict):
        raise Refused("invalid", f"the body must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise Refused(
            "invalid",
            f"unknown field {unknown[0][:80]!r} (expected {', '.join(sorted(allowed)) or 'none'})",
        )
    return data


def _check_shape(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise Refused("invalid", f"the body is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise Refused("invalid", f"a string in the body is longer than {MAX_STRING} characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_shape(key, depth + 1)
            _check_shape(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_shape(item, depth + 1)


def text_field(data: dict[str, Any], name: str, limit: int) -> str | None:
    """An optional string field of at most `limit` characters."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Refused("invalid", f"'{name}' must be a string")
    if len(value) > limit:
        raise Refused("invalid", f"'{name}' is longer than {limit} characters")
    return value


def service_name(text: str) -> str:
    """A path segment that can be a service name (DNS label); 404 otherwise, nothing looked up."""
    if not _SERVICE.fullmatch(text):
        raise Refused("not_found", f"{text[:80]!r} is not a service name (a DNS-1035 label)")
    return text


def rollout_ref(text: str) -> str:
    """A path segment that can be a rollout id; 404 otherwise, nothing looked up."""
    if not _ROLLOUT.fullmatch(text):
        raise Refused("not_found", f"{text[:80]!r} is not a rollout id")
    return text


def dead_letter_ref(text: str) -> str:
    """A path segment that can be a dead letter's id; 404 otherwise, nothing looked up."""
    if not DEAD_LETTER_ID.fullmatch(text):
        raise Refused("not_found", f"{text[:80]!r} is not a dead letter id (they look like dl-…)")
    return text


def int_param(request: ApiRequest, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Refused("invalid", f"query parameter {name!r} must be an integer") from None
    if not low <= value <= high:
        raise Refused("invalid", f"query parameter {name!r} must be between {low} and {high}")
    return value
