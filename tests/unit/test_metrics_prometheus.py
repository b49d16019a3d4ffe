"""PrometheusProvider against httpx.MockTransport: the request it sends, parsing, every error kind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared import metering
from shared.errors import PermanentError, RetryableError
from shared.metrics.prometheus import PrometheusProvider
from shared.metrics.provider import MetricsQueryError, MetricsUnavailable, Sample

URL = "http://prom.test:9090"
AT = datetime(2026, 12, 1, 12, 0, 0, 250000, tzinfo=UTC)


def provider(
    handler: Callable[[httpx.Request], httpx.Response], url: str = URL, timeout: float = 2.0
) -> PrometheusProvider:
    return PrometheusProvider(url, httpx.Client(transport=httpx.MockTransport(handler)), timeout)


def answer(status: int, body: Any) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return handler


def success(result_type: str, result: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": result_type, "result": result}}


def test_instant_query_sends_query_time_and_timeout_and_parses_a_vector() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json=success(
                "vector",
                [
                    {"metric": {"__name__": "up", "job": "gw"}, "value": [1.5, "1"]},
                    {"metric": {"job": "other"}, "value": [1.5, "0.25"]},
                ],
            ),
        )

    with metering.invocation() as usage:
        samples = provider(handler, url=URL + "/prefix/").query('up{job=~"g.*"}', AT)

    assert samples == [
        Sample({"__name__": "up", "job": "gw"}, 1.0),
        Sample({"job": "other"}, 0.25),
    ]
    (request,) = seen
    assert request.method == "GET"
    assert request.url.path == "/prefix/api/v1/query"
    assert dict(request.url.params) == {
        "query": 'up{job=~"g.*"}',
        "time": f"{AT.timestamp():.3f}",
        "timeout": "2s",
    }
    assert request.extensions["timeout"]["read"] == 2.0  # bounded on our side too
    assert usage[metering.METRICS_QUERIES] == 1


def test_scalar_empty_vector_and_special_values() -> None:
    assert provider(answer(200, success("scalar", [1.0, "42"]))).query("42", AT) == [
        Sample({}, 42.0)
    ]
    assert provider(answer(200, success("vector", []))).query("nothing", AT) == []
    special = success("vector", [{"metric": {}, "value": [1, "+Inf"]}])
    assert provider(answer(200, special)).query("1/0", AT)[0].value == float("inf")


@pytest.mark.parametrize("status,error_type", [(400, "bad_data"), (422, "execution")])
def test_a_rejected_query_is_a_permanent_error_with_prometheus_text(
    status: int, error_type: str
) -> None:
    body = {"status": "error", "errorType": error_type, "error": "1:4: parse error: unexpected"}
    with pytest.raises(MetricsQueryError) as caught:
        provider(answer(status, body)).query("up{", AT)
    message = str(caught.value)
    assert isinstance(caught.value, PermanentError)
    assert f"{status} {error_type}: 1:4: parse error: unexpected" in message
    assert "up{" in message and URL in message
    assert caught.value.query == "up{"


def test_a_range_vector_result_is_a_query_error() -> None:
    with pytest.raises(MetricsQueryError, match=r"'matrix' result.*up\[1m\]"):
        provider(answer(200, success("matrix", []))).query("up[1m]", AT)


@pytest.mark.parametrize(
    "status,body,expected",
    [
        (503, "Service Unavailable", "is not ready \\(503 Service Unavailable\\)"),
        (
            503,
            {"status": "error", "errorType": "timeout", "error": "query timed out"},
            "failed the query \\(503 timeout: query timed out\\)",
        ),
        (500, {"status": "error", "errorType": "internal", "error": "boom"}, "500 internal"),
        (502, "<html>bad gateway</html>", "did not answer like a Prometheus query API \\(502"),
        (404, "404 page not found", "did not answer like a Prometheus query API \\(404"),
        (200, "<html>a login page</html>", "did not answer like a Prometheus query API \\(200"),
        (200, {"status": "success", "data": {"resultType": "vector"}}, "malformed query result"),
    ],
)
def test_backend_failures_are_retryable_and_name_the_url(
    status: int, body: Any, expected: str
) -> None:
    with pytest.raises(MetricsUnavailable, match=expected) as caught:
        provider(answer(status, body)).query("up", AT)
    assert isinstance(caught.value, RetryableError)
    assert URL in str(caught.value)


def test_refused_connection_and_timeout_are_unavailable_with_what_to_check() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(
        MetricsUnavailable, match=r"cannot reach Prometheus at .*Connection refused"
    ):
        provider(refuse).query("up", AT)
    with pytest.raises(MetricsUnavailable, match="did not answer within 2s \\(ReadTimeout\\)") as c:
        provider(hang).query("up", AT)
    assert "HEKATON_PROMETHEUS_URL" in str(c.value)


def test_online_asks_ready_and_is_false_on_any_failure() -> None:
    paths: list[str] = []

    def ready(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, text="Prometheus Server is Ready.\n")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert provider(ready).online() and paths == ["/-/ready"]
    assert not provider(answer(503, "Service Unavailable")).online()
    assert not provider(refuse).online()


def test_bad_construction_and_naive_times_are_refused() -> None:
    never = answer(200, success("vector", []))
    with pytest.raises(ValueError, match="http"):
        provider(never, url="prom:9090")
    with pytest.raises(ValueError, match="timezone-aware"):
        provider(never).query("up", datetime(2026, 1, 1))
    assert provider(never).description == f"Prometheus at {URL}"
