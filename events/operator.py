"""Operator commands sent over Pub/Sub (topic `hekaton-rollback`)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from events.errors import MalformedEvent

FIELDS = ("service", "revision", "reason", "requested_by")


@dataclass(frozen=True)
class RollbackRequest:
    """ "Return service X's traffic to its stable (or the named) revision and end its rollout"."""

    service: str
    revision: str | None = None
    reason: str = "operator rollback"
    requested_by: str | None = None


def parse_rollback_request(body: bytes) -> RollbackRequest:
    """Parse `{"service": ..., "revision"?: ..., "reason"?: ..., "requested_by"?: ...}`."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"rollback request is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedEvent("rollback request is not a JSON object")
    # A misspelt 'revision' must not silently become "roll back to the default target".
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise MalformedEvent(
            f"rollback request has unknown field {unknown[0]!r} (expected {', '.join(FIELDS)})"
        )
    service = data.get("service")
    if not isinstance(service, str) or not service:
        raise MalformedEvent("rollback request needs a non-empty string 'service'")
    for name in ("revision", "reason", "requested_by"):
        if name in data and data[name] is not None and not isinstance(data[name], str):
            raise MalformedEvent(f"rollback request field '{name}' must be a string")
    return RollbackRequest(
        service=service,
        revision=data.get("revision") or None,
        reason=data.get("reason") or "operator rollback",
        requested_by=data.get("requested_by"),
    )
