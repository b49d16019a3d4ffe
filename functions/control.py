"""Cloud Function `control` (HTTP): the control API (services, rollback, steering), token-checked."""

from __future__ import annotations

from typing import Any

import functions_framework

from functions._http import api_request, flask_response
from functions._runtime import deps
from shared.api import control as api
from shared.api.serve import public_paths, serve

public = public_paths("control")


@functions_framework.http
def control(request: Any) -> tuple[bytes, int, dict[str, str]]:
    """JSON control API; see /openapi.json."""
    return flask_response(
        serve(deps(), api_request(request), api.routes, public, function="control")
    )
