"""Smoke validation: judging one response, and sending the spec's requests through the ingress."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from shared.spec import ExpectedResponse, SmokeRequest
from shared.validation import judge, run_checks, target


def expect(**fields: Any) -> ExpectedResponse:
    """An expectation from spec-style fields (aliases included)."""
    return ExpectedResponse.model_validate(fields)


def body(value: Any) -> bytes:
    """A JSON response body."""
    return json.dumps(value).encode()


def test_matching_response_passes_with_raw_values() -> None:
    """A response meeting every expectation passes and keeps status, latency and size."""
    result = judge(
        "p", expect(status=200, json={"class": "setosa"}), 200, body({"class": "setosa"}), 12.345
    )
    assert result.passed and result.problems == []
    assert (result.status, result.latency_ms, result.bytes) == (200, 12.35, 19)


def test_status_mismatch() -> None:
    """A different status is named with both values."""
    result = judge("p", expect(status=200), 503, b"", 1)
    assert not result.passed and result.problems == ["status 503, expected 200"]


def test_json_is_a_subset_match() -> None:
    """Extra response fields are fine; nested objects match as subsets; missing keys are named by path."""
    expected = expect(json={"model": {"name": "iris"}, "version": 2})
    actual = {"model": {"name": "iris", "framework": "sklearn"}, "version": 2, "extra": True}
    assert judge("p", expected, 200, body(actual), 1).passed
    result = judge("p", expected, 200, body({"model": {"framework": "x"}}), 1)
    assert result.problems == ["$.model.name: missing", "$.version: missing"]


def test_json_value_and_type_mismatches() -> None:
    """Wrong values, wrong shapes, and lists of another length are reported by path."""
    result = judge(
        "p",
        expect(json={"label": "setosa", "probs": [1, 0], "meta": {"a": 1}}),
        200,
        body({"label": "virginica", "probs": [1, 0, 0], "meta": 5}),
        1,
    )
    assert result.problems == [
        '$.label: expected "setosa", got "virginica"',
        "$.probs: expected [1, 0], got [1, 0, 0]",
        "$.meta: expected an object, got 5",
    ]


def test_non_json_response() -> None:
    """JSON expectations on a non-JSON body fail clearly."""
    assert judge("p", expect(json={"a": 1}), 200, b"<html>", 1).problems == ["response is not JSON"]


@pytest.mark.parametrize(
    ("tolerance", "actual", "passes"),
    [
        (0.0, 0.9, True),
        (0.0, 0.9000001, False),
        (0.01, 0.905, True),
        (0.01, 0.92, False),
        (0.01, True, False),  # a boolean is not a number, however close
    ],
)
def test_numeric_tolerance_is_relative(tolerance: float, actual: Any, passes: bool) -> None:
    """Numbers inside list items compare with the relative tolerance; booleans never as numbers."""
    result = judge(
        "p", expect(json={"probs": [0.9]}, tolerance=tolerance), 200, body({"probs": [actual]}), 1
    )
    assert result.passed is passes, result.problems


def test_latency_and_size_limits() -> None:
    """Latency and payload size are checked against their maxima."""
    limits = expect(max_latency_ms=100, max_bytes=10)
    assert judge("p", limits, 200, b"x" * 10, 100).passed
    result = judge("p", limits, 200, b"x" * 11, 100.6)
    assert result.problems == ["latency 101 ms over 100 ms", "response of 11 bytes over 10"]


def test_every_problem_is_listed() -> None:
    """All mismatches of one response are reported together."""
    result = judge("p", expect(status=200, json={"a": 1}, max_bytes=1), 500, body({"a": 2}), 1)
    assert len(result.problems) == 3


def test_target_goes_through_the_ingress_with_the_host_header() -> None:
    """With an ingress URL the request connects there and names the revision URL's host."""
    url = "http://candidate-iris.models.example.com"
    assert target(url + "/", None) == (url, {})
    assert target(url, "http://127.0.0.1:8080/") == (
        "http://127.0.0.1:8080",
        {"Host": "candidate-iris.models.example.com"},
    )


def test_run_checks_sends_each_request_and_records_failures() -> None:
    """Requests carry method, path, JSON and headers; connection errors become failed checks."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"echo": json.loads(request.content or b"null")})

    requests = [
        SmokeRequest.model_validate(
            {
                "name": "predict",
                "path": "/predict",
                "json": {"x": [1]},
                "headers": {"X-Key": "k"},
                "expect": {"json": {"echo": {"x": [1]}}},
            }
        ),
        SmokeRequest.model_validate({"name": "health", "method": "GET", "path": "/down"}),
    ]
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        results = run_checks(
            client,
            "http://candidate-iris.models.example.com",
            requests,
            ingress_url="http://127.0.0.1:8080",
            timeout=1,
        )
    assert [r.passed for r in results] == [True, False]
    assert results[1].problems[0].startswith("request failed: ConnectError")
    first = seen[0]
    assert (first.method, str(first.url)) == ("POST", "http://127.0.0.1:8080/predict")
    assert first.headers["host"] == "candidate-iris.models.example.com"
    assert first.headers["x-key"] == "k"
    assert seen[1].method == "GET" and seen[1].content == b""
