"""MetricsProvider on Prometheus's HTTP API: ``GET /api/v1/query`` (instant queries), ``/-/ready``.

Status codes as the API documents them: 400 ``bad_data`` (a query or parameter that does not
parse) and 422 ``execution`` (an expression that cannot be evaluated) are the query's fault:
``MetricsQueryError`` with Prometheus's own error text. 503 (not ready yet, or the query timed out
or was cancelled), other 5xx, a refused connection and a timeout are the backend's:
``MetricsUnavailable`` naming the URL to check. Anything that is not a Prometheus API answer (a
404, an HTML page) is also ``MetricsUnavailable``: it usually means the URL points elsewhere.

Every request is bounded: httpx's timeout on our side, and the same ``timeout`` parameter sent to
Prometheus so it gives up evaluating at the same moment we stop waiting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from shared import metering
from shared.metrics.provider import MetricsQueryError, MetricsUnavailable, Sample

QUERY_PATH = "/api/v1/query"
READY_PATH = "/-/ready"
URL_HINT = "check that Prometheus is running there and HEKATON_PROMETHEUS_URL"
_BODY_EXCERPT = 200


class PrometheusProvider:
    """Instant PromQL queries against one Prometheus server (or anything serving its query API)."""

    def __init__(self, url: str, http: httpx.Client, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL must be http(s)://..., got {url!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.url = url.rstrip("/")
        self._http = http
        self._timeout = timeout

    @property
    def description(self) -> str:
        """'Prometheus at http://...'."""
        return f"Prometheus at {self.url}"

    def query(self, promql: str, at: datetime) -> list[Sample]:
        """Evaluate ``promql`` at ``at``: a vector's samples, or one unlabelled sample for a scalar."""
        if at.tzinfo is None:
            raise ValueError(f"query time must be timezone-aware, got {at!r}")
        params = {
            "query": promql,
            "time": f"{at.timestamp():.3f}",
            "timeout": f"{self._timeout:g}s",
        }
        metering.count(metering.METRICS_QUERIES)
        try:
            response = self._http.get(self.url + QUERY_PATH, params=params, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            raise MetricsUnavailable(
                f"{self.description} did not answer within {self._timeout:g}s "
                f"({type(exc).__name__}); {URL_HINT}"
            ) from exc
        except httpx.HTTPError as exc:
            raise MetricsUnavailable(
                f"cannot reach {self.description}: {exc or type(exc).__name__}; {URL_HINT}"
            ) from exc
        return self._parse(promql, response)

    def online(self) -> bool:
        """True if ``GET /-/ready`` answers 200 (Prometheus answers 503 while it starts)."""
        try:
            response = self._http.get(self.url + READY_PATH, timeout=self._timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _parse(self, promql: str, response: httpx.Response) -> list[Sample]:
        body = _json_or_none(response)
        status = response.status_code
        if isinstance(body, dict) and body.get("status") == "error":
            detail = f"{body.get('errorType', 'error')}: {body.get('error', '')}".strip()
            if status in (400, 422):
                raise MetricsQueryError(
                    f"{self.description} rejected the query ({status} {detail}): {promql}",
                    query=promql,
                )
            raise MetricsUnavailable(
                f"{self.description} failed the query ({status} {detail}); {URL_HINT}"
            )
        if status == 503:
            raise MetricsUnavailable(
                f"{self.description} is not ready (503 {_excerpt(response)}); {URL_HINT}"
            )
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            raise MetricsUnavailable(
                f"{self.description} did not answer like a Prometheus query API "
                f"({status} {_excerpt(response)}); {URL_HINT}"
            )
        return _samples(self.description, promql, body.get("data"))


def _samples(where: str, promql: str, data: Any) -> list[Sample]:
    try:
        kind, result = data["resultType"], data["result"]
        if kind == "vector":
            return [
                Sample({str(k): str(v) for k, v in item["metric"].items()}, _value(item["value"]))
                for item in result
            ]
        if kind == "scalar":
            return [Sample({}, _value(result))]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise MetricsUnavailable(f"{where} sent a malformed query result ({exc!r})") from exc
    # A range vector (`x[5m]`) or a string is a valid answer, but not one an instant query can use.
    raise MetricsQueryError(
        f"query gives a {kind!r} result, not an instant vector or scalar "
        f"(a range selector needs a function around it, e.g. increase(...)): {promql}",
        query=promql,
    )


def _value(pair: Any) -> float:
    """A ``[timestamp, "value"]`` pair's value; Prometheus sends "NaN", "+Inf" and "-Inf" as such."""
    return float(pair[1])


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:_BODY_EXCERPT] + ("..." if len(text) > _BODY_EXCERPT else "")
