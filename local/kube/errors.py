"""API errors shaped as Kubernetes ``Status`` objects (reason, code, details, field causes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Kubernetes' field error types and the text the real API server puts in front of each detail.
_FIELD_ERROR_PREFIX = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueNotSupported": "Unsupported value",
}


@dataclass(frozen=True)
class FieldError:
    """One invalid field: its path (``spec.traffic[0].percent``), the error type and the detail."""

    field: str
    reason: str  # one of _FIELD_ERROR_PREFIX's keys
    detail: str = ""
    value: Any = None
    has_value: bool = False

    def message(self) -> str:
        """The cause message as the real server words it ("Invalid value: 110: expected ...")."""
        prefix = _FIELD_ERROR_PREFIX.get(self.reason, self.reason)
        parts = [prefix]
        if self.has_value and self.reason in ("FieldValueInvalid", "FieldValueDuplicate"):
            parts.append(json.dumps(self.value))
        if self.detail:
            parts.append(self.detail)
        return ": ".join(parts)


def required(field: str, detail: str = "") -> FieldError:
    """A missing field."""
    return FieldError(field, "FieldValueRequired", detail)


def invalid(field: str, value: Any, detail: str) -> FieldError:
    """A field whose value is not acceptable."""
    return FieldError(field, "FieldValueInvalid", detail, value, True)


def duplicate(field: str, value: Any, detail: str = "") -> FieldError:
    """A value that must be unique but is repeated."""
    return FieldError(field, "FieldValueDuplicate", detail, value, True)


def forbidden(field: str, detail: str) -> FieldError:
    """A field that may not be set (or changed)."""
    return FieldError(field, "FieldValueForbidden", detail)


class ApiError(Exception):
    """An error answered to the client as a ``Status`` body with an HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``Status`` object for the response body."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    """The named object does not exist."""
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(group, plural)} "{name}" not found',
        {"name": name, "group": group, "kind": plural},
    )


def path_not_found() -> ApiError:
    """The URL names no resource this server serves."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(group: str, plural: str, name: str) -> ApiError:
    """Creating a name that is taken."""
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(group, plural)} "{name}" already exists',
        {"name": name, "group": group, "kind": plural},
    )


def conflict(group: str, plural: str, name: str, why: str) -> ApiError:
    """An optimistic-concurrency failure (stale resourceVersion, failed precondition)."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": {why}',
        {"name": name, "group": group, "kind": plural},
    )


STALE_OBJECT = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def unprocessable(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid with one cause per field error, worded as the real server does."""
    qualified_kind = f"{kind}.{group}" if group else kind
    summaries = [f"{e.field}: {e.message()}" for e in errors]
    summary = summaries[0] if len(summaries) == 1 else "[" + ", ".join(summaries) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{qualified_kind} "{name}" is invalid: {summary}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": e.reason, "message": e.message(), "field": e.field} for e in errors
            ],
        },
    )


def bad_request(message: str) -> ApiError:
    """The request itself is malformed (body, parameters)."""
    return ApiError(400, "BadRequest", message)


def method_not_allowed(method: str) -> ApiError:
    """The path exists but does not support this HTTP method."""
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({method})",
    )


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    """The body's Content-Type is not one this resource accepts (e.g. strategic merge on a CRD)."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format ({content_type}) - accepted media "
        f"types include: {', '.join(accepted)}",
    )


def too_large(limit: int) -> ApiError:
    """The request body exceeds the server's limit."""
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def expired(message: str) -> ApiError:
    """A watch or list asked for a resourceVersion older than the retained history."""
    return ApiError(410, "Expired", message)


def internal(message: str) -> ApiError:
    """A bug on our side; reported rather than crashing the server thread."""
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
