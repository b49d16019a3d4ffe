"""The control API: create/update/delete services, roll back, steer a rollout. Identity from the token."""

from __future__ import annotations

import json
import uuid
from typing import Any

from shared.api import read
from shared.api.http import (
    ApiRequest,
    ApiResponse,
    dead_letter_ref,
    json_body,
    rollout_ref,
    service_name,
    text_field,
)
from shared.api.views import CommandAnswer, ReplayAnswer, ServiceAnswer, dump
from shared.auth.tokens import Principal
from shared.commands import MAX_REASON, ROLLOUT_COMMANDS, CommandRequest, Refused, bounded
from shared.dead_letters import replay
from shared.deps import Deps
from shared.errors import NotFound
from shared.idempotency import MAX_KEY
from shared.ignoring import record_ignored
from shared.queries import dead_letter_view, replay_view
from shared.services_admin import delete_service, put_service
from shared.steps.command_acts import rollout_acts
from shared.steps.commands import run_command

STEERING = tuple(c for c in ROLLOUT_COMMANDS if c != "rollback")  # abort, promote, pause, ...
FUNCTION = "control"
MAX_OUTLINED_KEYS = 20  # top-level body keys named in a refusal's record


def body_outline(body: bytes) -> str:
    """What a refused body was, without its values: its size and top-level keys.

    A refused spec may be refused *because* it carries a secret (a plain-text password in
    `env`, a credential header): its values never go into the record, only its shape.
    """
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return f"{len(body)} bytes, not JSON (values not kept)"
    if isinstance(parsed, dict):
        keys = [bounded(str(k), 40) for k in list(parsed)[:MAX_OUTLINED_KEYS]]
        more = ", …" if len(parsed) > MAX_OUTLINED_KEYS else ""
        return f"{len(body)} bytes, keys {', '.join(keys)}{more} (values not kept)"
    return f"{len(body)} bytes, a JSON {type(parsed).__name__} (values not kept)"


def routes(deps: Deps, request: ApiRequest, principal: Principal) -> ApiResponse:
    """Answer one control request; every refusal is recorded (bounded) under the request key."""
    key = _key(request)
    try:
        return _route(deps, request, principal, key)
    except (Refused, NotFound) as refused:
        reason = refused.reason if isinstance(refused, Refused) else str(refused)
        record_ignored(
            deps,
            function=FUNCTION,
            message_id=bounded(f"{principal.name} {request.method} {key}", 300),
            reason=bounded(f"{request.method} {request.path[:200]}: {reason}"),
            excerpt=body_outline(request.body),
            topic=None,
        )
        raise


def _key(request: ApiRequest) -> str:
    given = request.headers.get("idempotency-key")
    if given is None:
        return uuid.uuid4().hex  # no key: this request is not deduplicated
    if not 0 < len(given) <= MAX_KEY:
        raise Refused("invalid", f"Idempotency-Key must have 1 to {MAX_KEY} characters")
    return given


def _route(deps: Deps, request: ApiRequest, who: Principal, key: str) -> ApiResponse:
    parts, method = request.parts(), request.method
    if method == "GET":
        return read.routes(deps, request, who)  # every read of the read API, here too
    if parts == ["services"] and method == "POST":
        body = json_body(request, frozenset({"spec", "image"}))
        if "spec" not in body:
            raise Refused("invalid", "the body needs 'spec' (a service spec object)")
        image = text_field(body, "image", 500)
        answer = put_service(deps, body["spec"], image, principal=who.name, key=key)
        return ApiResponse(201 if answer["created"] else 200, dump(ServiceAnswer, answer))
    if len(parts) == 2 and parts[0] == "services":
        name = service_name(parts[1])
        if method == "DELETE":
            body = json_body(request, frozenset({"reason"}))
            reason = text_field(body, "reason", MAX_REASON) or request.query.get("reason", "")
            answer = delete_service(deps, name, principal=who.name, key=key, reason=bounded(reason))
            return ApiResponse(200, dump(CommandAnswer, answer))
    if len(parts) == 3 and method == "POST" and parts[0] == "services":
        name = service_name(parts[1])
        if parts[2] == "rollback":
            body = json_body(request, frozenset({"revision", "reason"}))
            return _command(deps, who, key, "rollback", body, service=name)
        if parts[2] in STEERING:  # the service's active rollout
            return _command(deps, who, key, parts[2], _steer_body(request), service=name)
    if len(parts) == 3 and method == "POST" and parts[0] == "rollouts" and parts[2] in STEERING:
        rid = rollout_ref(parts[1])
        return _command(deps, who, key, parts[2], _steer_body(request), rollout_id=rid)
    if len(parts) == 3 and method == "POST" and parts[0] == "dead-letters" and parts[2] == "replay":
        return _replay(
            deps, who, dead_letter_ref(parts[1]), json_body(request, frozenset({"force"}))
        )
    raise NotFound(
        f"no route {method} {request.path[:200]!r}; see /openapi.json for the control API"
    )


def _replay(deps: Deps, who: Principal, dead_letter: str, body: dict[str, Any]) -> ApiResponse:
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise Refused("invalid", "'force' must be true or false")
    record, done = replay(deps, dead_letter, principal=who.name, force=force)
    answer = {"replay": replay_view(done), "dead_letter": dead_letter_view(record)}
    return ApiResponse(200, dump(ReplayAnswer, answer))


def _steer_body(request: ApiRequest) -> dict[str, Any]:
    return json_body(request, frozenset({"reason", "deadline_seconds"}))


def _command(
    deps: Deps,
    who: Principal,
    key: str,
    command: str,
    body: dict[str, Any],
    *,
    service: str | None = None,
    rollout_id: str | None = None,
) -> ApiResponse:
    deadline = body.get("deadline_seconds")
    if deadline is not None and (
        isinstance(deadline, bool) or not isinstance(deadline, int | float)
    ):
        raise Refused("invalid", "'deadline_seconds' must be a number")
    if deadline is not None and command != "pause":
        raise Refused("invalid", "'deadline_seconds' applies to pause only")
    request = CommandRequest(
        command=command,
        principal=who.name,
        key=key,
        origin="api",
        service=service,
        rollout_id=rollout_id,
        reason=text_field(body, "reason", MAX_REASON) or "",
        revision=text_field(body, "revision", 200),
        deadline_seconds=float(deadline) if deadline is not None else None,
    )
    result = run_command(deps, request, rollout_acts())
    return ApiResponse(200, dump(CommandAnswer, result.as_dict()))
