"""Smoke validation: send the spec's requests to the candidate's tag URL and compare with expectations."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.spec import ExpectedResponse, SmokeRequest


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one smoke request, with the raw values measured."""

    name: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    status: int | None = None
    latency_ms: float | None = None
    bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the decision log."""
        return asdict(self)


def target(url: str, ingress_url: str | None) -> tuple[str, dict[str, str]]:
    """Where to connect for `url`: itself, or the ingress with the URL's host in the Host header."""
    if not ingress_url:
        return url.rstrip("/"), {}
    parts = urlsplit(url)
    return ingress_url.rstrip("/"), {"Host": parts.netloc}


def run_checks(
    client: httpx.Client,
    base_url: str,
    requests: list[SmokeRequest],
    *,
    ingress_url: str | None,
    timeout: float,
) -> list[CheckResult]:
    """Send every smoke request and judge each response."""
    connect_to, host_header = target(base_url, ingress_url)
    results = []
    for smoke in requests:
        headers = {**smoke.headers, **host_header}
        started = time.perf_counter()
        try:
            response = client.request(
                smoke.method,
                connect_to + smoke.path,
                json=smoke.json_body if smoke.json_body is not None else None,
                headers=headers,
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            results.append(
                CheckResult(smoke.name, False, [f"request failed: {type(exc).__name__}: {exc}"])
            )
            continue
        latency_ms = (time.perf_counter() - started) * 1000
        results.append(
            judge(smoke.name, smoke.expect, response.status_code, response.content, latency_ms)
        )
    return results


def judge(
    name: str, expect: ExpectedResponse, status: int, body: bytes, latency_ms: float
) -> CheckResult:
    """Compare one response with its expectation; list every mismatch."""
    problems = []
    if status != expect.status:
        problems.append(f"status {status}, expected {expect.status}")
    if expect.max_latency_ms is not None and latency_ms > expect.max_latency_ms:
        problems.append(f"latency {latency_ms:.0f} ms over {expect.max_latency_ms:.0f} ms")
    if expect.max_bytes is not None and len(body) > expect.max_bytes:
        problems.append(f"response of {len(body)} bytes over {expect.max_bytes}")
    if expect.json_fields:
        try:
            document = json.loads(body)
        except ValueError:
            problems.append("response is not JSON")
        else:
            problems.extend(_compare(expect.json_fields, document, expect.tolerance, path="$"))
    return CheckResult(name, not problems, problems, status, round(latency_ms, 2), len(body))


def _compare(expected: Any, actual: Any, tolerance: float, *, path: str) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {_short(actual)}"]
        problems = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                problems.extend(_compare(value, actual[key], tolerance, path=f"{path}.{key}"))
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {_short(expected)}, got {_short(actual)}"]
        problems = []
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            problems.extend(_compare(e, a, tolerance, path=f"{path}[{index}]"))
        return problems
    if _is_number(expected) and _is_number(actual):
        if math.isclose(
            float(expected), float(actual), rel_tol=tolerance, abs_tol=tolerance * 1e-9
        ):
            return []
        return [f"{path}: {actual} differs from {expected} beyond tolerance {tolerance}"]
    if expected != actual:
        return [f"{path}: expected {_short(expected)}, got {_short(actual)}"]
    return []


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
