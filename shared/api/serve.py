"""One wrapper for both APIs: public paths, the token gate, and errors mapped to statuses."""

from __future__ import annotations

from collections.abc import Callable

from events import trace
from shared import logs
from shared.api.gate import PUBLIC_PATHS, caller
from shared.api.http import ApiRequest, ApiResponse, error
from shared.auth.policy import Forbidden
from shared.auth.tokens import Principal, Unauthenticated
from shared.commands import Refused
from shared.deps import Deps
from shared.errors import NotFound, PermanentError, RetryableError
from shared.health import check_all

Routes = Callable[[Deps, ApiRequest, Principal], ApiResponse]
log = logs.get_logger("api")


def public_paths(api: str) -> Callable[[ApiRequest], ApiResponse | None]:
    """The answers served without a token: the API's /openapi.json and (read API) the dashboard's
    HTML page, which hold no data (/healthz is answered by `serve`, which has the dependencies)."""

    def answer(request: ApiRequest) -> ApiResponse | None:
        from shared.api import dashboard
        from shared.api.openapi import document

        if api == "read" and request.path == dashboard.PATH and request.method == "GET":
            return dashboard.page()
        if request.path == "/openapi.json":
            return ApiResponse(200, document(api))
        return None

    return answer


def serve(
    deps: Deps,
    request: ApiRequest,
    routes: Routes,
    public: Callable[[ApiRequest], ApiResponse | None],
    *,
    function: str | None = None,
) -> ApiResponse:
    """Answer one request: public paths without a token; everything else only for an allowed caller.

    Its log lines carry the `function` label and the request's trace (Cloud Run's `traceparent`),
    or the rollout's trace when they are about one.
    """
    context = trace.parse(request.headers.get(trace.ATTRIBUTE))
    with logs.scope(trace_context=context, function=function):
        return _answer(deps, request, routes, public)


def _answer(
    deps: Deps,
    request: ApiRequest,
    routes: Routes,
    public: Callable[[ApiRequest], ApiResponse | None],
) -> ApiResponse:
    """Answer one request inside its log scope (health, public paths, then authenticated routes)."""
    if request.path == "/healthz":
        # No token needed and no data given: only which dependency is up or down, and why.
        health = check_all(deps.probes)
        return ApiResponse(health.status, health.body)
    if request.path in PUBLIC_PATHS:
        answer = public(request)
        if answer is not None:
            return answer
    try:
        principal = caller(deps.settings, request)
    except Unauthenticated as exc:
        log.warning("unauthenticated call refused: %s", exc, extra={"path": request.path[:200]})
        return ApiResponse(401, {"error": str(exc)}, {"WWW-Authenticate": "Bearer"})
    except Forbidden as exc:
        log.warning("forbidden: %s", exc, extra={"path": request.path[:200]})
        return error(403, str(exc))
    try:
        return routes(deps, request, principal)
    except Refused as refused:
        return error(refused.status, refused.reason)
    except NotFound as exc:
        return error(404, str(exc))
    except PermanentError as exc:
        return error(422, str(exc))
    except RetryableError as exc:
        return ApiResponse(503, {"error": f"{exc}; try again"}, {"Retry-After": "1"})
    except Exception:
        # A bug: logged here, as one JSON line inside the request's scope (trace, function), with
        # the stack trace; left to the framework it would be a text traceback with neither.
        log.exception(
            "unexpected error answering %s %s; the stack trace says where",
            request.method,
            request.path[:200],
        )
        return error(500, "internal error in hekaton: the function's log has the stack trace")
