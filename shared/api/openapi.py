"""The OpenAPI 3.1 documents of the read and control APIs, schemas generated from the typed views."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from shared.api import views

_MODELS = (
    views.ServicePage,
    views.ServiceStatus,
    views.RolloutPage,
    views.RolloutDetail,
    views.DecisionPage,
    views.IgnoredPage,
    views.DeadLetterPage,
    views.DeadLetterItem,
    views.ReplayAnswer,
    views.CommandAnswer,
    views.ServiceAnswer,
    views.ErrorBody,
)
_ERRORS = {
    "401": "no token, or one that does not verify",
    "403": "a verified principal that is not allowed",
    "404": "unknown service, rollout or path",
    "409": "not possible in the rollout's phase (the reason says where it applies)",
    "422": "invalid request (the reason names the field)",
    "503": "contended or a dependency is unavailable; retry with the same Idempotency-Key",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(
    summary: str, answer: str, *, body: str | None = None, params: list[Any] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": params or [],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": _ref(answer)}}},
            **{
                code: {
                    "description": text,
                    "content": {"application/json": {"schema": _ref("ErrorBody")}},
                }
                for code, text in _ERRORS.items()
            },
        },
    }
    if body is not None:
        op["requestBody"] = {
            "content": {"application/json": {"schema": {"description": body, "type": "object"}}}
        }
    return op


def _param(name: str, where: str, text: str, kind: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": text,
        "schema": {"type": kind},
    }


NAME = _param("name", "path", "service name")
RID = _param("id", "path", "rollout id")
DLID = _param("id", "path", "dead letter id (dl-…)")
PAGE = [
    _param("limit", "query", "items per page (1-100, default 20)", "integer"),
    _param("cursor", "query", "next_cursor of the previous page"),
]
KEY = _param("Idempotency-Key", "header", "applied once per key, whatever the retries")


@cache
def document(api: str) -> dict[str, Any]:
    """The OpenAPI document of `api` ("read" or "control")."""
    _, schemas = models_json_schema(
        [(m, "serialization") for m in _MODELS], ref_template="#/components/schemas/{model}"
    )
    if api == "read":
        paths: dict[str, Any] = {
            "/services": {"get": _op("registered services", "ServicePage", params=PAGE)},
            "/services/{name}": {
                "get": _op(
                    "stable revision, live traffic, rollouts", "ServiceStatus", params=[NAME]
                )
            },
            "/services/{name}/rollouts": {
                "get": _op(
                    "rollouts newest first, with decisions", "RolloutPage", params=[NAME, *PAGE]
                )
            },
            "/rollouts/{id}": {
                "get": _op(
                    "one rollout and its decisions after `after`",
                    "RolloutDetail",
                    params=[RID, _param("after", "query", "sequence number", "integer")],
                )
            },
            "/rollouts/{id}/decisions": {
                "get": _op(
                    "decisions after a sequence number",
                    "DecisionPage",
                    params=[RID, _param("after", "query", "sequence number", "integer")],
                )
            },
            "/ignored": {
                "get": _op(
                    "messages acknowledged without action, with the total",
                    "IgnoredPage",
                    params=PAGE,
                )
            },
            "/dead-letters": {
                "get": _op(
                    "messages Pub/Sub dead-lettered, newest first, with their replays",
                    "DeadLetterPage",
                    params=PAGE,
                )
            },
            "/dead-letters/{id}": {
                "get": _op("one dead letter", "DeadLetterItem", params=[DLID]),
            },
        }
        title = "hekaton read API"
    else:
        steer = "{'reason'?: str, 'deadline_seconds'?: number (pause only)}"
        paths = {
            "/services": {
                "post": _op(
                    "create or update a service; optionally deploy an image now",
                    "ServiceAnswer",
                    body="{'spec': ServiceSpec, 'image'?: 'repo[:tag]@sha256:...'}",
                    params=[KEY],
                )
            },
            "/services/{name}": {
                "get": _op("the service's status", "ServiceStatus", params=[NAME]),
                "delete": _op(
                    "remove its Knative Service and Istio policies, end its rollout; history stays",
                    "CommandAnswer",
                    body="{'reason'?: str}",
                    params=[NAME, KEY],
                ),
            },
            "/services/{name}/rollback": {
                "post": _op(
                    "traffic back to the stable or a named served revision",
                    "CommandAnswer",
                    body="{'revision'?: name | sha256:<64 hex>, 'reason'?: str}",
                    params=[NAME, KEY],
                )
            },
            **{
                f"/services/{{name}}/{c}": {
                    "post": _op(
                        f"{c} the service's active rollout",
                        "CommandAnswer",
                        body=steer,
                        params=[NAME, KEY],
                    )
                }
                for c in ("abort", "promote", "pause", "resume", "approve")
            },
            "/dead-letters/{id}/replay": {
                "post": _op(
                    "republish a dead letter to its original topic (409 if replayed, unless force)",
                    "ReplayAnswer",
                    body="{'force'?: bool}",
                    params=[DLID, KEY],
                )
            },
            **{
                f"/rollouts/{{id}}/{c}": {
                    "post": _op(f"{c} this rollout", "CommandAnswer", body=steer, params=[RID, KEY])
                }
                for c in ("abort", "promote", "pause", "resume", "approve")
            },
        }
        title = "hekaton control API"
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
