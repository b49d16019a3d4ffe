"""Operator commands sent over Pub/Sub (topic `hekaton-rollback`)."""

from __future__ import annotations

from dataclasses import dataclass

from events import jsontext
from events.errors import MalformedEvent
from events.steps import SERVICE_NAME

FIELDS = ("service", "revision", "reason", "requested_by")
MAX_TEXT = 1000  # characters of revision, reason or requested_by


@dataclass(frozen=True)
class RollbackRequest:
    """ "Return service X's traffic to its stable (or the named) revision and end its rollout"."""

    service: str
    revision: str | None = None
    reason: str = "operator rollback"
    requested_by: str | None = None


def parse_rollback_request(body: bytes) -> RollbackRequest:
    """Parse `{"service": ..., "revision"?: ..., "reason"?: ..., "requested_by"?: ...}`."""
    data = jsontext.loads(body, "rollback request")
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
    if not SERVICE_NAME.fullmatch(service):
        raise MalformedEvent(
            f"rollback request 'service' {service[:80]!r} is not a service name (a DNS-1035 label)"
        )
    for name in ("revision", "reason", "requested_by"):
        if name in data and data[name] is not None and not isinstance(data[name], str):
            raise MalformedEvent(f"rollback request field '{name}' must be a string")
        if isinstance(data.get(name), str) and len(data[name]) > MAX_TEXT:
            raise MalformedEvent(
                f"rollback request field '{name}' is longer than {MAX_TEXT} characters"
            )
    return RollbackRequest(
        service=service,
        revision=data.get("revision") or None,
        reason=data.get("reason") or "operator rollback",
        requested_by=data.get("requested_by"),
    )
