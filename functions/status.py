"""Cloud Function `status` (HTTP): the read API (services, rollouts, decisions, ignored), token-checked."""

from __future__ import annotations

from typing import Any

import functions_framework

from functions._http import api_request, flask_response
from functions._runtime import deps
from shared.api import read
from shared.api.http import ApiRequest, ApiResponse
from shared.api.serve import public_paths, serve
from shared.deps import Deps

public = public_paths("read")


def answer(d: Deps, request: ApiRequest) -> ApiResponse:
    """One read request through the token gate (split out so it is testable without HTTP)."""
    return serve(d, request, read.routes, public, function="status")


@functions_framework.http
def status(request: Any) -> tuple[bytes, int, dict[str, str]]:
    """JSON read API; see /openapi.json."""
    return flask_response(answer(deps(), api_request(request)))
