"""What the HTTP functions share: the Flask request as an ApiRequest, an ApiResponse as Flask's tuple."""

from __future__ import annotations

from typing import Any

from shared.api.http import MAX_BODY, ApiRequest, ApiResponse


def api_request(request: Any) -> ApiRequest:
    """The framework-free request (the body read up to one byte past the limit, so it is refused)."""
    body = request.stream.read(MAX_BODY + 1) if request.method in ("POST", "PUT", "DELETE") else b""
    return ApiRequest(
        method=request.method,
        path=request.path,
        query={key: request.args.get(key, "") for key in request.args},
        headers={key.lower(): value for key, value in request.headers.items()},
        body=body,
    )


def flask_response(response: ApiResponse) -> tuple[bytes, int, dict[str, str]]:
    """functions-framework's (body, status, headers)."""
    return (
        response.encoded(),
        response.status,
        {
            "Content-Type": "application/json",
            **response.headers,
        },
    )
