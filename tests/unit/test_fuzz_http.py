"""The HTTP functions (status, control) fuzzed through functions-framework's Flask app: never a 5xx,
and 401 for every call without a valid token on every route template, odd paths included."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, seed

from tests import fuzz_http, fuzz_targets
from tests.fuzz_http import ODD_SEGMENTS, TEMPLATES, TOKEN_KINDS, ApiCall
from tests.fuzz_targets import UNHANDLED

SHARE = fuzz_targets.share(80)


@pytest.mark.parametrize("name", ["status", "control"])
def test_generated_requests_never_500_and_need_a_token(name: str, tmp_path: Path) -> None:
    """A seeded share of bench/fuzz.py's requests (odd segments, queries, bodies, methods, tokens)."""
    world, ctx = fuzz_http.api_world(tmp_path)
    tokens = fuzz_http.token_kinds(tmp_path)
    statuses: set[int] = set()

    @seed(11)
    @SHARE
    @given(fuzz_http.api_requests(name, ctx, tokens))
    def check(request: ApiCall) -> None:
        result = fuzz_http.call(world, name, request, tokens)
        assert result.outcome != UNHANDLED, (request, result.status, result.detail)
        statuses.add(result.status)

    check()
    assert {200, 401, 404} <= statuses, statuses


@pytest.mark.parametrize("name", ["status", "control"])
@pytest.mark.parametrize("token", [t for t in TOKEN_KINDS if t != "valid"])
def test_every_route_template_answers_401_without_a_valid_token(
    name: str, token: str, tmp_path: Path
) -> None:
    """Each template with a real name and with every odd segment, each method: 401, no data."""
    world, ctx = fuzz_http.api_world(tmp_path)
    tokens = fuzz_http.token_kinds(tmp_path)
    for template in TEMPLATES:
        if template in ("/openapi.json", "/healthz", "/dashboard"):
            continue
        # Every odd segment goes through every template in the test below and in the generated
        # share above; here a few of each kind keep the 6 token kinds x 2 APIs fast.
        for segment in (ctx.service, ctx.rollout_id, "..", "%2e%2e", "%2F", "__x__", "%00", "%ff"):
            path = template.format(*[segment] * template.count("{}"))
            for method in ("GET", "POST"):
                request = ApiCall(method, path, "", token, b"{}")
                result = fuzz_http.call(world, name, request, tokens)
                assert result.status in (401, 308), (method, path, result.status, result.detail)
                assert result.outcome != UNHANDLED, result.detail


@pytest.mark.parametrize("name", ["status", "control"])
def test_odd_paths_with_a_valid_token_are_never_500(name: str, tmp_path: Path) -> None:
    """'..', encoded dots and slashes, __x__, 5000 characters, NUL, invalid UTF-8: answered, no 5xx
    ('/services/%2F' is '/services//', the list: 200 is right)."""
    world, _ = fuzz_http.api_world(tmp_path)
    tokens = fuzz_http.token_kinds(tmp_path)
    for template in TEMPLATES:
        if "{}" not in template:
            continue
        for segment in ODD_SEGMENTS:
            path = template.format(*[segment] * template.count("{}"))
            result = fuzz_http.call(world, name, ApiCall("GET", path, "", "valid", b""), tokens)
            assert result.status < 500 and result.outcome != UNHANDLED, (path, result.detail)
