"""Cloud Function `status` (HTTP): services, one service, its rollouts, one rollout with its decisions."""

from __future__ import annotations

import json
from typing import Any

import functions_framework

from functions._runtime import deps
from shared import queries
from shared.errors import NotFound


def _json(body: Any, status: int = 200) -> tuple[str, int, dict[str, str]]:
    return json.dumps(body, indent=2, default=str), status, {"Content-Type": "application/json"}


def route(path: str, d: Any) -> tuple[str, int, dict[str, str]]:
    """Answer one GET path (split out so it is testable without HTTP)."""
    parts = [p for p in path.split("/") if p]
    try:
        if parts in ([], ["services"]):
            return _json({"services": queries.list_services(d.store)})
        if len(parts) == 2 and parts[0] == "services":
            return _json(queries.service_status(d.store, d.serving, parts[1]))
        if len(parts) == 3 and parts[0] == "services" and parts[2] == "rollouts":
            return _json(
                {"service": parts[1], "rollouts": queries.service_history(d.store, parts[1])}
            )
        if len(parts) == 2 and parts[0] == "rollouts":
            return _json(queries.rollout_detail(d.store, parts[1]))
        if parts == ["ignored"]:
            return _json({"ignored": [e.to_document() for e in d.store.list_ignored()]})
        if parts == ["healthz"]:
            return _json({"ok": True})
    except NotFound as exc:
        return _json({"error": str(exc)}, 404)
    return _json(
        {
            "error": f"no such path {path!r}",
            "paths": [
                "/services",
                "/services/NAME",
                "/services/NAME/rollouts",
                "/rollouts/ID",
                "/ignored",
            ],
        },
        404,
    )


@functions_framework.http
def status(request: Any) -> tuple[str, int, dict[str, str]]:
    """GET-only JSON status API."""
    if request.method != "GET":
        return _json({"error": "only GET is supported"}, 405)
    return route(request.path, deps())
