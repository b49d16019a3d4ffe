"""The read API (the status function): services, rollouts, decisions, ignored messages; all paginated."""

from __future__ import annotations

from typing import Any

from shared import queries
from shared.api.http import (
    ApiRequest,
    ApiResponse,
    dead_letter_ref,
    error,
    int_param,
    rollout_ref,
    service_name,
)
from shared.api.pages import next_cursor, window
from shared.api.views import (
    DeadLetterItem,
    DeadLetterPage,
    DecisionPage,
    IgnoredPage,
    RolloutDetail,
    RolloutPage,
    ServicePage,
    ServiceStatus,
    dump,
)
from shared.auth.tokens import Principal
from shared.deps import Deps
from shared.errors import NotFound

PATHS = (
    "/services",
    "/services/NAME",
    "/services/NAME/rollouts",
    "/rollouts/ID",
    "/rollouts/ID/decisions",
    "/ignored",
    "/dead-letters",
    "/dead-letters/ID",
    "/openapi.json",
)
MAX_SEQ = 1_000_000


def routes(deps: Deps, request: ApiRequest, principal: Principal) -> ApiResponse:
    """GET routes of the read API (the caller is verified by `serve`)."""
    if request.method != "GET":
        return error(405, "the read API answers GET only; changes go through the control API")
    parts = request.parts()
    if parts == ["services"]:
        limit, after = window(request)
        items = queries.list_services(deps.store, limit=limit, after=after)
        cursor = next_cursor([i["service"] for i in items], limit)
        return ApiResponse(200, dump(ServicePage, {"services": items, "next_cursor": cursor}))
    if len(parts) == 2 and parts[0] == "services":
        status = queries.service_status(deps.store, deps.serving, service_name(parts[1]))
        return ApiResponse(200, dump(ServiceStatus, status))
    if len(parts) == 3 and parts[0] == "services" and parts[2] == "rollouts":
        name = service_name(parts[1])
        limit, after = window(request)
        history = queries.service_history(deps.store, name, limit=limit, after=after)
        page: dict[str, Any] = {
            "service": name,
            "rollouts": history,
            "next_cursor": next_cursor([r["id"] for r in history], limit),
        }
        return ApiResponse(200, dump(RolloutPage, page))
    if len(parts) in (2, 3) and parts[0] == "rollouts":
        rid = rollout_ref(parts[1])
        since = int_param(request, "after", 0, 0, MAX_SEQ)
        detail = queries.rollout_detail(deps.store, rid, after_seq=since)
        if len(parts) == 2:
            return ApiResponse(200, dump(RolloutDetail, detail))
        if parts[2] == "decisions":
            seqs = [d["seq"] for d in detail["decisions"]]
            page = {
                "rollout_id": rid,
                "phase": detail["phase"],
                "decisions": detail["decisions"],
                "last_seq": seqs[-1] if seqs else since,
            }
            return ApiResponse(200, dump(DecisionPage, page))
    if parts == ["ignored"]:
        limit, after = window(request)
        events = deps.store.list_ignored(limit=limit, after=after)
        page = {
            "ignored": [queries.ignored_view(e) for e in events],
            "total": deps.store.count_ignored(),
            "next_cursor": next_cursor([e.id for e in events], limit),
        }
        return ApiResponse(200, dump(IgnoredPage, page))
    if parts == ["dead-letters"]:
        limit, after = window(request)
        records = deps.store.list_dead_letters(limit=limit, after=after)
        page = {
            "dead_letters": [queries.dead_letter_view(r) for r in records],
            "next_cursor": next_cursor([r.id for r in records], limit),
        }
        return ApiResponse(200, dump(DeadLetterPage, page))
    if len(parts) == 2 and parts[0] == "dead-letters":
        found = deps.store.get_dead_letter(dead_letter_ref(parts[1]))
        if found is None:
            raise NotFound(f"no dead letter {parts[1]!r}")
        return ApiResponse(200, dump(DeadLetterItem, queries.dead_letter_view(found.value)))
    raise NotFound(f"no such path {request.path[:200]!r}; paths: {', '.join(PATHS)}")
