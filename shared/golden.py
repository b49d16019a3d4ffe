"""Golden-set agreement: replay recorded requests against stable and candidate, compare the answers.

`replay_golden` sends each request of the spec's golden set to both revisions' tag URLs (I/O);
`evaluate` (pure) compares the answers and gates on two figures:

- **agreement**: the share of answers on which the candidate agrees with the stable revision.
  One request is one answer; with `batch: true` each item of the compared lists (one per
  instance) is one answer. An answer agrees when both revisions answer the same status and, for
  2xx, every named field agrees: `exact` (equal JSON) or `{tolerance: t}` (numbers within `t`,
  absolute). A candidate that fails to answer (no connection, 5xx, 2xx that is not JSON)
  disagrees on all of that request's answers.
- **distance** between the two revisions' answer distributions, per field, the largest counted:
  for `exact` fields the total-variation distance of the label histograms (0: same mix of
  labels, 1: disjoint); for `tolerance` fields the 1-Wasserstein (earth mover's) distance of the
  numbers, in the field's own units (for probabilities, 0..1).

Requests the stable revision cannot answer usably are left out and counted as stable errors;
when it answers fewer than half of them there is no baseline and the gate fails. The result
keeps the figures, the thresholds and up to five disagreeing cases, each bounded in size.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from shared.spec import FieldRule, GoldenRequest, GoldenSet, encode_json
from shared.validation import request_headers, target

MAX_DISAGREEMENTS = 5
EXCERPT_CHARS = 300


@dataclass(frozen=True)
class Answer:
    """One revision's answer to one golden request."""

    status: int | None = None
    document: Any = None
    error: str | None = None  # no usable answer: no connection, 5xx, a 2xx that is not JSON

    def summary(self) -> dict[str, Any]:
        """Status and error (if any), for an excerpt."""
        return {"status": self.status, **({"error": self.error} if self.error else {})}


@dataclass(frozen=True)
class Disagreement:
    """One case where the candidate answered otherwise than the stable revision (bounded excerpts)."""

    request: str  # the request's name, or its line number in the golden set ("#3")
    item: int | None  # the item of a batch answer, or None
    body: Any  # the request (for a batch item: that instance, where it can be found)
    stable: Any
    candidate: Any
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the decision log."""
        return asdict(self)


@dataclass(frozen=True)
class GoldenResult:
    """The figures of one golden-set replay and whether they pass the thresholds."""

    passed: bool
    reason: str  # one line for the decision log
    requests: int  # replayed
    compared_requests: int  # answered usably by the stable revision
    answers: int  # compared answers (items, with batch: true)
    agreed: int
    agreement: float | None
    distance: float | None  # the largest of `distances`; None when no field values came back
    distances: dict[str, float | None]
    stable_errors: int
    candidate_errors: int
    min_agreement: float
    max_distance: float
    disagreements: list[Disagreement] = field(default_factory=list)
    seconds: float | None = None

    def values(self) -> dict[str, Any]:
        """The measured figures for the decision log."""
        return {
            "agreement": _round(self.agreement),
            "agreed": self.agreed,
            "answers": self.answers,
            "distance": _round(self.distance),
            "distances": {k: _round(v) for k, v in self.distances.items()},
            "requests": self.requests,
            "compared_requests": self.compared_requests,
            "stable_errors": self.stable_errors,
            "candidate_errors": self.candidate_errors,
            "disagreements": [d.as_dict() for d in self.disagreements],
            **({"seconds": round(self.seconds, 3)} if self.seconds is not None else {}),
        }

    def thresholds(self) -> dict[str, Any]:
        """What the figures were held to."""
        return {"min_agreement": self.min_agreement, "max_distance": self.max_distance}


# -- HTTP ---------------------------------------------------------------------------------


def replay_golden(
    client: httpx.Client,
    stable_url: str,
    candidate_url: str,
    golden: GoldenSet,
    *,
    ingress_url: str | None,
    timeout: float,
    extra_headers: Mapping[str, str] | None = None,
) -> GoldenResult:
    """Send the golden requests to both tag URLs (`golden.concurrency` at a time) and evaluate.

    Each request goes to stable and candidate side by side. `timeout` (per request) applies unless
    the golden set names its own `timeout_seconds`.
    """
    requests = golden.selected()
    per_request = golden.timeout_seconds or timeout
    extra = dict(extra_headers or {})  # e.g. hekaton's token
    stable_url_, stable_host = target(stable_url, ingress_url)
    stable_target = (stable_url_, {**stable_host, **extra})
    candidate_url_, candidate_host = target(candidate_url, ingress_url)
    candidate_target = (candidate_url_, {**candidate_host, **extra})
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=golden.concurrency) as pool:
        futures = [
            (
                pool.submit(fetch, client, stable_target, r, golden, per_request),
                pool.submit(fetch, client, candidate_target, r, golden, per_request),
            )
            for r in requests
        ]
        stable = [s.result() for s, _ in futures]
        candidate = [c.result() for _, c in futures]
    result = evaluate(golden, requests, stable, candidate)
    return dataclasses.replace(result, seconds=time.perf_counter() - started)


def fetch(
    client: httpx.Client,
    where: tuple[str, dict[str, str]],
    request: GoldenRequest,
    golden: GoldenSet,
    timeout: float,
) -> Answer:
    """One revision's answer to one golden request (`where` as `validation.target` gives it)."""
    connect_to, host_header = where
    body = encode_json(request.json_body) if request.json_body is not None else None
    try:
        response = client.request(
            request.method or golden.method,
            connect_to + (request.path or golden.path),
            content=body,
            headers=request_headers(request.headers, body, host_header),
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        return Answer(error=f"request failed: {type(exc).__name__}: {_clip(str(exc))}")
    status = response.status_code
    if status >= 500:
        return Answer(status, error=f"status {status}")
    try:
        document = json.loads(response.content) if response.content else None
    except ValueError:
        if 200 <= status < 300:
            return Answer(status, error="answer is not JSON")
        document = None
    return Answer(status, document)


# -- comparing (pure) ---------------------------------------------------------------------


@dataclass
class _Tally:
    answers: int = 0
    agreed: int = 0
    stable_errors: int = 0
    candidate_errors: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    # per field label: the values each side answered (items, with batch), for the distances
    stable_values: dict[str, list[Any]] = field(default_factory=dict)
    candidate_values: dict[str, list[Any]] = field(default_factory=dict)

    def disagree(self, case: Disagreement) -> None:
        if len(self.disagreements) < MAX_DISAGREEMENTS:
            self.disagreements.append(case)


def evaluate(
    golden: GoldenSet,
    requests: Sequence[GoldenRequest],
    stable: Sequence[Answer],
    candidate: Sequence[Answer],
) -> GoldenResult:
    """Agreement, distance and the verdict from both revisions' answers (same order as `requests`)."""
    rules = golden.rules()
    tally = _Tally(
        stable_values={r.label: [] for r in rules},
        candidate_values={r.label: [] for r in rules},
    )
    for index, (request, s, c) in enumerate(zip(requests, stable, candidate, strict=True)):
        _compare_request(tally, rules, golden.batch, request.name or f"#{index + 1}", request, s, c)
    distances = {
        rule.label: _distance(
            rule, tally.stable_values[rule.label], tally.candidate_values[rule.label]
        )
        for rule in rules
    }
    measured = [d for d in distances.values() if d is not None]
    distance = max(measured) if measured else None
    agreement = tally.agreed / tally.answers if tally.answers else None
    compared = len(requests) - tally.stable_errors
    passed, reason = _verdict(
        golden, len(requests), compared, tally, agreement, distance, distances
    )
    return GoldenResult(
        passed=passed,
        reason=reason,
        requests=len(requests),
        compared_requests=compared,
        answers=tally.answers,
        agreed=tally.agreed,
        agreement=agreement,
        distance=distance,
        distances=distances,
        stable_errors=tally.stable_errors,
        candidate_errors=tally.candidate_errors,
        min_agreement=golden.min_agreement,
        max_distance=golden.max_distance,
        disagreements=tally.disagreements,
    )


def _compare_request(
    tally: _Tally,
    rules: list[FieldRule],
    batch: bool,
    name: str,
    request: GoldenRequest,
    stable: Answer,
    candidate: Answer,
) -> None:
    if candidate.error:
        tally.candidate_errors += 1
    if stable.error:
        tally.stable_errors += 1
        return
    stable_ok = stable.status is not None and 200 <= stable.status < 300
    # The stable answer's compared fields (items with batch); None: it cannot be a reference.
    reference = _fields(stable.document, rules, batch) if stable_ok else {}
    if reference is None:
        tally.stable_errors += 1
        return
    items = len(next(iter(reference.values()))) if batch and reference else None
    cases = items if items is not None else 1

    def excerpt_of(answer: Answer, values: dict[str, Any] | None, item: int | None) -> Any:
        shown = {
            label: (value[item] if item is not None else value)
            for label, value in (values or {}).items()
        }
        return _excerpt({**answer.summary(), **shown})

    def disagree_all(detail: str, values: dict[str, Any] | None = None) -> None:
        tally.answers += cases
        tally.disagree(
            Disagreement(
                name,
                None,
                _excerpt(request.json_body),
                excerpt_of(stable, reference, None),
                excerpt_of(candidate, values, None) if values else _excerpt(candidate.summary()),
                detail,
            )
        )

    if candidate.error:
        disagree_all(f"candidate: {candidate.error}")
        return
    if candidate.status != stable.status:
        disagree_all(f"status {candidate.status} from the candidate, {stable.status} from stable")
        return
    if not stable_ok:  # the same non-2xx status from both: they agree (e.g. bad input refused)
        tally.answers += 1
        tally.agreed += 1
        return
    answered = _fields(candidate.document, rules, batch)
    for label, value in reference.items():
        tally.stable_values[label].extend(value if batch else [value])
    if answered is not None:
        for label, value in answered.items():
            tally.candidate_values[label].extend(value if batch else [value])
    problem = _shape_problem(reference, answered, items)
    if problem:
        disagree_all(problem, answered if answered else None)
        return
    assert answered is not None
    for item in range(items) if items is not None else [None]:
        detail = _differs(rules, reference, answered, item)
        tally.answers += 1
        if detail is None:
            tally.agreed += 1
            continue
        tally.disagree(
            Disagreement(
                name,
                item,
                _excerpt(_instance(request.json_body, item, items)),
                excerpt_of(stable, reference, item),
                excerpt_of(candidate, answered, item),
                detail,
            )
        )


def _fields(document: Any, rules: list[FieldRule], batch: bool) -> dict[str, Any] | None:
    """The named fields of a JSON answer (lists of one length with batch), or None if absent."""
    values: dict[str, Any] = {}
    for rule in rules:
        found, value = _lookup(document, rule.path)
        if not found or (batch and not isinstance(value, list)):
            return None
        values[rule.label] = value
    if batch and len({len(v) for v in values.values()}) > 1:
        return None
    return values


def _shape_problem(
    reference: dict[str, Any], answered: dict[str, Any] | None, items: int | None
) -> str | None:
    if answered is None:
        kind = "lists of one length" if items is not None else "present"
        return f"candidate's answer lacks the compared fields ({', '.join(reference)} {kind})"
    if items is not None:
        got = len(next(iter(answered.values())))
        if got != items:
            return f"candidate answered {got} items, stable {items}"
    return None


def _differs(
    rules: list[FieldRule], reference: dict[str, Any], answered: dict[str, Any], item: int | None
) -> str | None:
    """Why the candidate's value of one answer differs (the first field that does), or None."""
    for rule in rules:
        expected, actual = reference[rule.label], answered[rule.label]
        if item is not None:
            expected, actual = expected[item], actual[item]
            where = f"{_label(rule)}[{item}]"
        else:
            where = _label(rule)
        if rule.tolerance is None:
            if _canonical(expected) != _canonical(actual):
                return f"{where}: {_clip(_canonical(actual))} from the candidate, {_clip(_canonical(expected))} from stable"
        elif not _close(expected, actual, rule.tolerance):
            return (
                f"{where}: {_clip(_canonical(actual))} from the candidate, "
                f"{_clip(_canonical(expected))} from stable, beyond tolerance {rule.tolerance:g}"
            )
    return None


def _close(expected: Any, actual: Any, tolerance: float) -> bool:
    """Same shape, numbers within `tolerance` (absolute), everything else equal."""
    if _is_number(expected) and _is_number(actual):
        return abs(float(expected) - float(actual)) <= tolerance
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(
            _close(e, a, tolerance) for e, a in zip(expected, actual, strict=True)
        )
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            _close(expected[k], actual[k], tolerance) for k in expected
        )
    return _canonical(expected) == _canonical(actual)


def _verdict(
    golden: GoldenSet,
    replayed: int,
    compared: int,
    tally: _Tally,
    agreement: float | None,
    distance: float | None,
    distances: dict[str, float | None],
) -> tuple[bool, str]:
    errors = []
    if tally.candidate_errors:
        errors.append(f"candidate failed {tally.candidate_errors} of {replayed} requests")
    if tally.stable_errors:
        errors.append(f"stable failed {tally.stable_errors} of {replayed}")
    tail = f" ({'; '.join(errors)})" if errors else ""
    if compared == 0 or compared * 2 < replayed or agreement is None:
        return False, (
            f"golden set: stable answered only {compared} of {replayed} requests usably; "
            f"no baseline to compare with{tail}"
        )
    figures = f"agreement {agreement:.1%} ({tally.agreed}/{tally.answers} answers)"
    widest = max(distances, key=lambda k: distances[k] or 0.0)
    spread = (
        f"distance {distance:.3f} ({widest})" if distance is not None else "no distance measured"
    )
    problems = []
    if agreement < golden.min_agreement:
        problems.append(f"{figures} below {golden.min_agreement:.1%}")
    if distance is not None and distance > golden.max_distance:
        problems.append(f"{spread} over {golden.max_distance:g}")
    if problems:
        return False, "golden set: " + "; ".join(problems) + tail
    return True, (
        f"golden set: {figures}, {spread}; within >= {golden.min_agreement:.1%} and "
        f"<= {golden.max_distance:g}{tail}"
    )


# -- distances ----------------------------------------------------------------------------


def _distance(rule: FieldRule, stable: list[Any], candidate: list[Any]) -> float | None:
    if rule.tolerance is None:
        return total_variation([_canonical(v) for v in stable], [_canonical(v) for v in candidate])
    return wasserstein_1(_numbers(stable), _numbers(candidate))


def total_variation(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Half the L1 distance between the two label histograms (0..1); None if either is empty."""
    if not a or not b:
        return None
    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in ca.keys() | cb.keys())


def wasserstein_1(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The earth mover's distance between two samples: the integral of |F_a - F_b|; None if empty."""
    if not a or not b:
        return None
    sa, sb = sorted(a), sorted(b)
    points = sorted(set(sa) | set(sb))
    total = 0.0
    for left, right in itertools.pairwise(points):
        fa = bisect.bisect_right(sa, left) / len(sa)
        fb = bisect.bisect_right(sb, left) / len(sb)
        total += abs(fa - fb) * (right - left)
    return total


def _numbers(values: list[Any]) -> list[float]:
    out: list[float] = []
    for value in values:
        if _is_number(value):
            out.append(float(value))
        elif isinstance(value, list):
            out.extend(_numbers(value))
        elif isinstance(value, dict):
            out.extend(_numbers(list(value.values())))
    return out


# -- small helpers ------------------------------------------------------------------------


def _lookup(document: Any, path: tuple[str | int, ...]) -> tuple[bool, Any]:
    value = document
    for part in path:
        if isinstance(part, int):
            if not isinstance(value, list) or part >= len(value):
                return False, None
        elif not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _instance(body: Any, item: int | None, items: int | None) -> Any:
    """For a batch item: the instance it answers (the body's one list of that length), else the body."""
    if item is None or not isinstance(body, dict):
        return body
    lists = [k for k, v in body.items() if isinstance(v, list) and len(v) == items]
    if len(lists) != 1:
        return body
    return {lists[0]: [body[lists[0]][item]]}


def _label(rule: FieldRule) -> str:
    return rule.label if rule.label.startswith("$") else "$." + rule.label


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _excerpt(value: Any, limit: int = EXCERPT_CHARS) -> Any:
    """`value` itself if its JSON is short, else its JSON cut to `limit` characters (a string)."""
    text = json.dumps(value, default=str)
    if len(text) <= limit:
        return value
    return f"{text[: limit - 30]}... ({len(text):,} characters)"


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
