"""Smoke validation: send the spec's requests to the candidate's tag URL and compare with expectations.

One attempt is `run_checks` (I/O) then `decide` (pure): PASSED, FAILED, or RETRY_LATER while a
cold candidate is still warming up. The validate step never sleeps between attempts: it stores
when validation started and how many attempts ran, sets the rollout's due time to `retry_at`
and is woken again by the tick. Past the warm-up deadline RETRY_LATER becomes FAILED, with the
last problems as the reason: a candidate that cannot be reached never retries forever.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
from jsonschema import Draft202012Validator

from shared.spec import ExpectedResponse, SmokeRequest, Validation

# Statuses a cold or not-yet-routed revision answers with (from the activator, queue-proxy or
# gateway): retried during warm-up unless the request expects exactly that status.
COLD_STATUSES = frozenset({502, 503, 504})
# Retry pauses double from `retry_seconds` up to this (or `retry_seconds`, if larger).
MAX_RETRY_PAUSE_SECONDS = 30.0
_SCHEMA_PROBLEMS_SHOWN = 3


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one smoke request, with the raw values measured."""

    name: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    status: int | None = None
    latency_ms: float | None = None
    bytes: int | None = None
    # Failed in a way a cold revision fails (no connection, timeout, 502/503/504, only too slow):
    # worth another attempt while the warm-up lasts.
    transient: bool = False
    request_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the decision log."""
        return asdict(self)


def target(url: str, ingress_url: str | None) -> tuple[str, dict[str, str]]:
    """Where to connect for `url`: itself, or the ingress with the URL's host in the Host header."""
    if not ingress_url:
        return url.rstrip("/"), {}
    parts = urlsplit(url)
    return ingress_url.rstrip("/"), {"Host": parts.netloc}


def request_headers(
    own: Mapping[str, str], body: bytes | None, host_header: Mapping[str, str]
) -> dict[str, str]:
    """A request's headers: JSON content type for a body (unless it names its own), its own, Host."""
    headers = dict(own)
    if body is not None and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    return {**headers, **host_header}


def run_checks(
    client: httpx.Client,
    base_url: str,
    requests: list[SmokeRequest],
    *,
    ingress_url: str | None,
    timeout: float,
    extra_headers: Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """Send every smoke request (bodies as `SmokeRequest.body()` encodes them) and judge each response."""
    connect_to, host_header = target(base_url, ingress_url)
    host_header = {**host_header, **(extra_headers or {})}  # e.g. hekaton's token
    results = []
    for smoke in requests:
        body = smoke.body()
        sent = len(body) if body is not None else None
        started = time.perf_counter()
        try:
            response = client.request(
                smoke.method,
                connect_to + smoke.path,
                content=body,
                headers=request_headers(smoke.headers, body, host_header),
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            results.append(
                CheckResult(
                    smoke.name,
                    False,
                    [f"request failed: {type(exc).__name__}: {exc}"],
                    transient=isinstance(exc, httpx.TransportError),
                    request_bytes=sent,
                )
            )
            continue
        latency_ms = (time.perf_counter() - started) * 1000
        result = judge(
            smoke.name,
            smoke.expect,
            response.status_code,
            response.content,
            latency_ms,
            headers=response.headers,
        )
        results.append(_with(result, request_bytes=sent))
    return results


def judge(
    name: str,
    expect: ExpectedResponse,
    status: int,
    body: bytes,
    latency_ms: float,
    *,
    headers: Mapping[str, str] | None = None,
) -> CheckResult:
    """Compare one response with its expectation; list every mismatch."""
    problems = []
    if status != expect.status:
        problems.append(f"status {status}, expected {expect.status}")
    cold = status in COLD_STATUSES and status != expect.status
    slow = expect.max_latency_ms is not None and latency_ms > expect.max_latency_ms
    if slow:
        problems.append(f"latency {latency_ms:.0f} ms over {expect.max_latency_ms:.0f} ms")
    if expect.max_bytes is not None and len(body) > expect.max_bytes:
        problems.append(f"response of {len(body)} bytes over {expect.max_bytes}")
    problems.extend(_check_headers(expect, headers or {}))
    if expect.json_fields or expect.json_schema is not None:
        try:
            document = json.loads(body)
        except ValueError:
            problems.append("response is not JSON")
        else:
            if expect.json_schema is not None:
                problems.extend(_check_schema(expect.json_schema, document))
            problems.extend(_compare(expect.json_fields, document, expect.tolerance, path="$"))
    transient = cold or (slow and len(problems) == 1)
    return CheckResult(
        name, not problems, problems, status, round(latency_ms, 2), len(body), transient
    )


def _with(result: CheckResult, **changes: Any) -> CheckResult:
    return CheckResult(**{**asdict(result), **changes})


def _check_headers(expect: ExpectedResponse, headers: Mapping[str, str]) -> list[str]:
    """Expected headers: names case-insensitive; values exact, or a full match of a regex."""
    actual = {name.lower(): value for name, value in headers.items()}
    problems = []
    for rule in expect.header_rules():
        value = actual.get(rule.name)
        if value is None:
            problems.append(f"header {rule.name}: missing")
        elif rule.exact is not None and value != rule.exact:
            problems.append(f"header {rule.name}: {_short(value)}, expected {_short(rule.exact)}")
        elif rule.regex is not None and re.fullmatch(rule.regex, value) is None:
            problems.append(f"header {rule.name}: {_short(value)} does not match /{rule.regex}/")
    return problems


def _check_schema(schema: dict[str, Any] | bool, document: Any) -> list[str]:
    """The first few JSON Schema violations, each with the JSON path where it is."""
    validator_class = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
    validator = validator_class(schema)
    errors = list(itertools.islice(validator.iter_errors(document), _SCHEMA_PROBLEMS_SHOWN + 1))
    problems = [
        f"schema: {error.json_path}: {_clip(error.message)}"
        for error in errors[:_SCHEMA_PROBLEMS_SHOWN]
    ]
    if len(errors) > _SCHEMA_PROBLEMS_SHOWN:
        problems.append("schema: more violations not shown")
    return problems


# -- one attempt's verdict, and warm-up pacing (pure) -------------------------------------


class Verdict(StrEnum):
    """What one validation attempt concludes."""

    PASSED = "passed"  # every check passed
    FAILED = "failed"  # a check failed for good, or the warm-up deadline passed
    RETRY_LATER = "retry_later"  # only cold-revision failures, and the warm-up still lasts


def classify(results: Sequence[CheckResult]) -> Verdict:
    """PASSED if all passed; FAILED if any failed for good; else RETRY_LATER (only transient failures).

    A wrong answer is final even while other requests still meet a cold revision. The deadline is
    not looked at here: see `decide`.
    """
    if all(r.passed for r in results):
        return Verdict.PASSED
    if any(not r.passed and not r.transient for r in results):
        return Verdict.FAILED
    return Verdict.RETRY_LATER


def warmup_deadline(started_at: datetime, validation: Validation) -> datetime:
    """When a validation that started (first attempt) at `started_at` must have its answer."""
    return started_at + timedelta(seconds=validation.warmup_seconds)


def warmup_exhausted(started_at: datetime, now: datetime, validation: Validation) -> bool:
    """Whether the warm-up is over: a transient failure now is a failure."""
    return now >= warmup_deadline(started_at, validation)


def retry_pause_seconds(attempt: int, validation: Validation) -> float:
    """The pause after failed attempt number `attempt` (1-based): doubling, capped."""
    cap = max(validation.retry_seconds, MAX_RETRY_PAUSE_SECONDS)
    return min(validation.retry_seconds * 2 ** (max(attempt, 1) - 1), cap)


@dataclass(frozen=True)
class SmokeDecision:
    """What to do after one attempt: the verdict, its one-line reason, and when to try again."""

    verdict: Verdict
    reason: str
    attempt: int
    deadline: datetime
    retry_at: datetime | None = None  # only for RETRY_LATER; never after the deadline

    def values(self) -> dict[str, Any]:
        """The warm-up figures for the decision log."""
        values: dict[str, Any] = {
            "attempt": self.attempt,
            "warmup_deadline": self.deadline.isoformat(),
        }
        if self.retry_at is not None:
            values["retry_at"] = self.retry_at.isoformat()
        return values


def decide(
    results: Sequence[CheckResult],
    *,
    started_at: datetime,
    now: datetime,
    attempt: int,
    validation: Validation,
) -> SmokeDecision:
    """The outcome of attempt number `attempt` (1-based) of a validation first tried at `started_at`."""
    deadline = warmup_deadline(started_at, validation)
    verdict = classify(results)
    failed = [r for r in results if not r.passed]
    details = "; ".join(f"{r.name}: {', '.join(r.problems)}" for r in failed)
    tries = f" after {attempt} attempts" if attempt > 1 else ""
    if verdict is Verdict.PASSED:
        summary = (
            f"{len(results)} smoke request(s) passed" if results else "no smoke requests configured"
        )
        return SmokeDecision(verdict, summary + tries, attempt, deadline)
    if verdict is Verdict.FAILED:
        return SmokeDecision(verdict, f"validation failed{tries}: {details}", attempt, deadline)
    if now >= deadline:
        return SmokeDecision(
            Verdict.FAILED,
            f"candidate not answering within the {validation.warmup_seconds:g} s warm-up "
            f"({attempt} attempt{'s' if attempt != 1 else ''}): {details}",
            attempt,
            deadline,
        )
    retry_at = min(now + timedelta(seconds=retry_pause_seconds(attempt, validation)), deadline)
    return SmokeDecision(
        verdict,
        f"candidate not answering yet (attempt {attempt}; warm-up until "
        f"{deadline:%H:%M:%S}): {details}",
        attempt,
        deadline,
        retry_at,
    )


# -- comparing JSON -----------------------------------------------------------------------


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
    return _clip(json.dumps(value, default=str))


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
