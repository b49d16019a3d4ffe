"""The HTTP functions (status, control) as fuzz targets: every route template with odd segments,
queries, bodies, methods and tokens (none, garbage, expired, wrong audience, wrong issuer, valid),
sent through functions-framework's Flask app onto the fakes.

Beyond "never a 5xx": a request without a valid token gets 401 on every path but the public ones.
Shared by tests/unit/test_fuzz_http.py and `bench/fuzz.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from hypothesis import strategies as st

from local.auth_keys import AUDIENCE, ISSUER, PRIVATE_KEY, auth_dir
from shared.api.gate import PUBLIC_PATHS
from tests import fuzz_inputs as inputs
from tests.fakes import World
from tests.fuzz_inputs import Context
from tests.fuzz_targets import (
    HANDLED,
    RECORDED,
    UNHANDLED,
    Result,
    Watch,
    _describe,
    app,
    watching,
)
from tests.tokens import Issuer

# Route templates of both APIs ({} is a segment the fuzzer fills in).
TEMPLATES = (
    "/services",
    "/services/{}",
    "/services/{}/rollouts",
    "/services/{}/rollback",
    "/services/{}/abort",
    "/services/{}/promote",
    "/services/{}/pause",
    "/services/{}/resume",
    "/rollouts/{}",
    "/rollouts/{}/decisions",
    "/rollouts/{}/abort",
    "/rollouts/{}/promote",
    "/ignored",
    "/openapi.json",
    "/healthz",
    "/dashboard",
    "/{}",
    "/{}/{}/{}/{}",
)
ODD_SEGMENTS = (
    "..",
    ".",
    "%2e%2e",
    "%2E%2E%2F%2E%2E",
    "%2F",
    "%252e%252e",
    "%252F",
    "__x__",
    "__name__",
    "x" * 5000,
    "%00",
    "a%00b",
    "%ff%fe",  # invalid UTF-8 once decoded
    "%c3%28",
    "%ed%b2%80",  # a UTF-8-encoded surrogate
    "é",
    "IRIS",
    "iris;x",
    "iris%3Fx=1",
)
TOKEN_KINDS = ("valid", "none", "garbage", "expired", "wrong-audience", "wrong-issuer", "basic")


@dataclass(frozen=True)
class ApiCall:
    """One HTTP request to an API function."""

    method: str
    path: str
    query: str
    token: str  # one of TOKEN_KINDS
    body: bytes
    idempotency_key: str | None = None


def api_world(folder: Path) -> tuple[World, Context]:
    """The fuzz world (iris, one rollout in flight), trusting a throw-away issuer made in `folder`."""
    from tests.fuzz_targets import fuzz_world

    made = (auth_dir(folder) / PRIVATE_KEY).exists()
    issuer = Issuer(folder) if made else Issuer.create(folder)  # the same key for every world
    return fuzz_world(**issuer.settings())


def token_kinds(folder: Path) -> dict[str, dict[str, str]]:
    """The Authorization header of each token kind (signed by the issuer in `folder`)."""
    key = auth_dir(folder) / PRIVATE_KEY
    pem = key.read_bytes()
    kid = (auth_dir(folder) / "kid").read_text().strip()
    now = int(time.time())

    def signed(**changes: Any) -> dict[str, str]:
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "ann@hekaton.local",
            "email": "ann@hekaton.local",
            "iat": now,
            "exp": now + 3600,
            **changes,
        }
        token = jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})
        return {"Authorization": f"Bearer {token}"}

    return {
        "valid": signed(),
        "none": {},
        "garbage": {"Authorization": "Bearer not-a-jwt"},
        "expired": signed(iat=now - 7200, exp=now - 3600),
        "wrong-audience": signed(aud="someone-else"),
        "wrong-issuer": signed(iss="https://evil.example"),
        "basic": {"Authorization": "Basic YW5uOnB3"},
    }


def api_requests(
    name: str, ctx: Context, tokens: dict[str, dict[str, str]]
) -> st.SearchStrategy[ApiCall]:
    """Generated requests for the API function `name` ("status" or "control")."""
    segment = st.one_of(
        st.sampled_from((ctx.service, ctx.rollout_id)),
        st.sampled_from(ODD_SEGMENTS),
        # What can stand in a request line as it is: printable ASCII (escapes come from ODD_SEGMENTS).
        st.text(
            alphabet=st.characters(
                min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"
            ),
            min_size=1,
            max_size=12,
        ),
    )
    query_value = st.one_of(
        st.sampled_from(("", "-1", "0", "101", "1e400", "1" + "0" * 5000, "%ff", "__x__")),
        st.sampled_from(("a/b", "..", "__x__", "x" * 2000)).map(inputs_cursor),
        st.sampled_from(("W1tbW1tb", "eyJhZnRlciI6IG51bGx9", "!!!")),
    )
    body = st.one_of(
        st.just(b""),
        st.builds(
            lambda spec, reason, deadline: inputs.dumps(
                {"spec": spec, "reason": reason, "deadline_seconds": deadline}
            ),
            inputs.odd_values(),
            inputs.odd_values(),
            inputs.odd_values(),
        ),
        st.builds(
            lambda reason, deadline: inputs.dumps({"reason": reason, "deadline_seconds": deadline}),
            inputs.odd_values(),
            inputs.odd_values(),
        ),
        st.sampled_from(inputs.BAD_BODIES),
        st.sampled_from(inputs.RAW_JSON).map(str.encode),
    )

    @st.composite
    def build(draw: st.DrawFn) -> ApiCall:
        template = draw(st.sampled_from(TEMPLATES))
        path = template.format(*(draw(segment) for _ in range(template.count("{}"))))
        path = "/" + path.lstrip("/")  # '//x' would be a host to the test client, not a path
        keys = draw(st.lists(st.sampled_from(("limit", "cursor", "after", "reason")), max_size=3))
        query = "&".join(f"{k}={draw(query_value)}" for k in keys)
        methods = ("GET",) if name == "status" else ("GET", "POST", "DELETE")
        method = draw(st.one_of(st.sampled_from(methods), st.sampled_from(("PUT", "PATCH"))))
        return ApiCall(
            method=method,
            path=path,
            query=query,
            token=draw(st.sampled_from(tuple(tokens))),
            body=draw(body) if method in ("POST", "PUT", "DELETE", "PATCH") else b"",
            idempotency_key=draw(st.one_of(st.none(), st.sampled_from(("k-1", "", "x" * 300)))),
        )

    return build()


def inputs_cursor(after: str) -> str:
    """A cursor as the API makes them, around an odd item id."""
    from shared.api.pages import encode

    return encode(after)


def call(world: World, name: str, request: ApiCall, tokens: dict[str, dict[str, str]]) -> Result:
    """Send one request to the API function `name`; classify it (a 5xx, or anything but 401 for a
    non-public path without a valid token, is unhandled)."""
    headers = dict(tokens[request.token])
    if request.idempotency_key is not None:
        headers["Idempotency-Key"] = request.idempotency_key
    flask_app = app(name)
    watch = Watch()
    try:
        with watching(world, flask_app) as watch:
            response = flask_app.test_client().open(
                request.path,
                method=request.method,
                query_string=request.query,
                headers=headers,
                data=request.body,
            )
        status = response.status_code
    except Exception as exc:
        return Result(UNHANDLED, 0, watch.records, _describe(exc))
    records, raised = watch.records, watch.raised
    if raised or status >= 500:
        detail = _describe(raised[0]) if raised else response.get_data(as_text=True)[:300]
        return Result(UNHANDLED, status, records, detail)
    public = response.request.path in PUBLIC_PATHS
    # Werkzeug's routing answers 'a//b' with a 308 to 'a/b' before any code of ours: no data in it.
    redirect = status == 308
    if request.token != "valid" and not public and status != 401 and not redirect:
        return Result(UNHANDLED, status, records, f"{request.token} token answered {status}")
    return Result(RECORDED if records else HANDLED, status, records)
