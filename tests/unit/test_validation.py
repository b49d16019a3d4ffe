"""Smoke validation: judging one response, and sending the spec's requests through the ingress."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.spec import ExpectedResponse, SmokeRequest, Validation
from shared.validation import (
    CheckResult,
    Verdict,
    classify,
    decide,
    judge,
    run_checks,
    target,
    warmup_exhausted,
)


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
                "headers": {"X-Model-Variant": "k"},
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
    assert first.headers["x-model-variant"] == "k"
    assert seen[1].method == "GET" and seen[1].content == b""


# -- JSON Schema, headers, request bodies -------------------------------------------------

PREDICTIONS_SCHEMA = {
    "type": "object",
    "required": ["predictions", "model_version"],
    "properties": {
        "predictions": {"type": "array", "items": {"enum": ["setosa", "versicolor", "virginica"]}},
        "model_version": {"type": "string"},
    },
}


def test_json_schema_passes_a_conforming_answer_and_names_violations_by_path() -> None:
    """The schema is checked on the decoded answer; each violation is named with its JSON path."""
    expected = expect(schema=PREDICTIONS_SCHEMA)
    assert judge("p", expected, 200, body({"predictions": ["setosa"], "model_version": "v1"}), 1)
    result = judge("p", expected, 200, body({"predictions": ["rose", "setosa", 3]}), 1)
    assert result.problems == [
        "schema: $: 'model_version' is a required property",
        "schema: $.predictions[0]: 'rose' is not one of ['setosa', 'versicolor', 'virginica']",
        "schema: $.predictions[2]: 3 is not one of ['setosa', 'versicolor', 'virginica']",
    ]
    assert judge("p", expected, 200, b"<html>", 1).problems == ["response is not JSON"]


def test_schema_violations_are_bounded() -> None:
    """A huge wrong answer reports a few violations, not one per item."""
    schema = {"properties": {"predictions": {"items": {"const": "setosa"}}}}
    result = judge("p", expect(schema=schema), 200, body({"predictions": ["virginica"] * 5000}), 1)
    assert len(result.problems) == 4 and result.problems[-1] == "schema: more violations not shown"


def test_expected_headers_case_insensitive_names_exact_or_regex_values() -> None:
    """Header names match whatever their case; a string is the exact value, {regex} a full match."""
    expected = expect(
        headers={"content-type": "application/json", "X-Model-Version": {"regex": "v[0-9]+"}}
    )
    good = {"Content-Type": "application/json", "x-model-version": "v12"}
    assert judge("p", expected, 200, b"", 1, headers=good).passed
    result = judge(
        "p",
        expected,
        200,
        b"",
        1,
        headers={"Content-Type": "application/json; charset=utf-8", "X-Model-Version": "v1-rc"},
    )
    assert result.problems == [
        'header content-type: "application/json; charset=utf-8", expected "application/json"',
        'header x-model-version: "v1-rc" does not match /v[0-9]+/',
    ]
    assert judge("p", expected, 200, b"", 1).problems == [
        "header content-type: missing",
        "header x-model-version: missing",
    ]


def test_repeated_body_is_generated_and_sent_with_its_size() -> None:
    """`repeat` sends the list at json.<field> repeated; the bytes sent are recorded."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"n": len(json.loads(request.content)["instances"])})

    smoke = SmokeRequest.model_validate(
        {
            "name": "large",
            "path": "/predict",
            "json": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5]], "id": 7},
            "repeat": {"field": "instances", "times": 1000},
            "expect": {"json": {"n": 2000}},
        }
    )
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        [result] = run_checks(client, "http://c", [smoke], ingress_url=None, timeout=1)
    assert result.passed, result.problems
    sent = json.loads(seen[0].content)
    assert sent["id"] == 7 and sent["instances"][1999] == [6.0, 2.9, 4.5, 1.5]
    assert result.request_bytes == len(seen[0].content) == len(smoke.body() or b"")
    assert seen[0].headers["content-type"] == "application/json"


# -- warm-up: classification and pacing ---------------------------------------------------

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WARMUP = Validation(warmup_seconds=60, retry_seconds=5)


def ok(name: str = "ok") -> CheckResult:
    """A passed check."""
    return CheckResult(name, True)


def cold(name: str = "cold") -> CheckResult:
    """A check that met a cold revision."""
    return CheckResult(name, False, ["status 503, expected 200"], status=503, transient=True)


def wrong(name: str = "wrong") -> CheckResult:
    """A check that got a wrong answer."""
    return CheckResult(name, False, ['$.predictions[0]: expected "setosa", got "virginica"'])


def test_what_counts_as_a_cold_revision() -> None:
    """No connection, a timeout, 502/503/504 (unless expected) and slowness alone are transient."""
    assert judge("p", expect(), 503, b"", 1).transient
    assert judge("p", expect(), 502, b"", 1).transient
    assert not judge("p", expect(status=503), 503, b"", 1).problems
    assert not judge("p", expect(), 500, b"", 1).transient
    assert not judge("p", expect(), 404, b"", 1).transient
    assert judge("p", expect(max_latency_ms=10), 200, b"", 50).transient
    # slow *and* wrong is wrong
    slow_wrong = judge("p", expect(json={"a": 1}, max_latency_ms=10), 200, body({"a": 2}), 50)
    assert not slow_wrong.transient

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/refused":
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/slow":
            raise httpx.ReadTimeout("timed out", request=request)
        raise httpx.TooManyRedirects("loop", request=request)

    requests = [
        SmokeRequest.model_validate({"name": n, "method": "GET", "path": "/" + n})
        for n in ("refused", "slow", "loop")
    ]
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        results = run_checks(client, "http://c", requests, ingress_url=None, timeout=1)
    assert [r.transient for r in results] == [True, True, False]


@pytest.mark.parametrize(
    ("results", "verdict"),
    [
        ([], Verdict.PASSED),
        ([ok(), ok()], Verdict.PASSED),
        ([ok(), cold()], Verdict.RETRY_LATER),
        ([cold(), cold()], Verdict.RETRY_LATER),
        ([cold(), wrong()], Verdict.FAILED),  # a wrong answer is final
        ([ok(), wrong()], Verdict.FAILED),
    ],
)
def test_classify(results: list[CheckResult], verdict: Verdict) -> None:
    """Pass, fail for good, or try again later."""
    assert classify(results) is verdict


def test_warmup_retries_are_paced_and_end_at_the_deadline() -> None:
    """Pauses double from retry_seconds (capped), never pass the deadline, and end in FAILED."""
    now, attempt, due_times = T0, 1, []
    while True:
        decision = decide(
            [cold("setosa")], started_at=T0, now=now, attempt=attempt, validation=WARMUP
        )
        if decision.verdict is not Verdict.RETRY_LATER:
            break
        assert decision.retry_at is not None and decision.retry_at <= T0 + timedelta(seconds=60)
        due_times.append((decision.retry_at - T0).total_seconds())
        now, attempt = decision.retry_at, attempt + 1
    assert due_times == [5, 15, 35, 60]
    assert decision.verdict is Verdict.FAILED and decision.retry_at is None
    assert decision.reason == (
        "candidate not answering within the 60 s warm-up (5 attempts): "
        "setosa: status 503, expected 200"
    )
    assert warmup_exhausted(T0, now, WARMUP) and not warmup_exhausted(
        T0, now - timedelta(seconds=1), WARMUP
    )


def test_a_late_wakeup_past_the_deadline_fails_at_once() -> None:
    """A tick that comes late (GCP: up to a minute) finds the deadline passed: FAILED, no retry."""
    decision = decide(
        [cold()], started_at=T0, now=T0 + timedelta(seconds=300), attempt=2, validation=WARMUP
    )
    assert decision.verdict is Verdict.FAILED and "60 s warm-up" in decision.reason


def test_no_warmup_means_no_retry() -> None:
    """warmup_seconds: 0 turns the first cold answer into a failure."""
    decision = decide(
        [cold()], started_at=T0, now=T0, attempt=1, validation=Validation(warmup_seconds=0)
    )
    assert decision.verdict is Verdict.FAILED


def test_decisions_pass_and_fail_with_reasons_and_figures() -> None:
    """Reasons are one line; values carry the attempt and the deadline."""
    passed = decide([ok(), ok()], started_at=T0, now=T0, attempt=3, validation=WARMUP)
    assert (passed.verdict, passed.reason) == (
        Verdict.PASSED,
        "2 smoke request(s) passed after 3 attempts",
    )
    failed = decide([wrong("setosa")], started_at=T0, now=T0, attempt=1, validation=WARMUP)
    assert failed.reason == (
        'validation failed: setosa: $.predictions[0]: expected "setosa", got "virginica"'
    )
    later = decide([cold()], started_at=T0, now=T0, attempt=1, validation=WARMUP)
    assert later.values() == {
        "attempt": 1,
        "warmup_deadline": "2026-01-01T12:01:00+00:00",
        "retry_at": "2026-01-01T12:00:05+00:00",
    }
    assert "\n" not in later.reason and "warm-up until 12:01:00" in later.reason
