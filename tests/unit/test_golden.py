"""Golden-set agreement: comparing two revisions' answers, the distances, the gate, the replay."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.golden import (
    MAX_DISAGREEMENTS,
    Answer,
    GoldenResult,
    evaluate,
    replay_golden,
    total_variation,
    wasserstein_1,
)
from shared.spec import GoldenRequest, GoldenSet


def golden_set(requests: int = 1, **fields: Any) -> GoldenSet:
    """A golden set of `requests` one-flower requests; `fields` override its settings."""
    return GoldenSet.model_validate(
        {
            "requests": [{"json": {"instances": [[i, 1, 1, 1]]}} for i in range(requests)],
            "fields": {"predictions": "exact"},
            **fields,
        }
    )


def answer(status: int = 200, **document: Any) -> Answer:
    """A usable answer with this JSON document."""
    return Answer(status, document)


def run(golden: GoldenSet, stable: list[Answer], candidate: list[Answer]) -> Any:
    """evaluate() over the golden set's requests."""
    return evaluate(golden, golden.requests, stable, candidate)


def test_identical_answers_agree_fully() -> None:
    golden = golden_set(3)
    answers = [answer(predictions=[label]) for label in ("setosa", "versicolor", "virginica")]
    result = run(golden, answers, answers)
    assert result.passed and (result.agreement, result.distance) == (1.0, 0.0)
    assert (result.requests, result.answers, result.agreed) == (3, 3, 3)
    assert result.reason == (
        "golden set: agreement 100.0% (3/3 answers), distance 0.000 (predictions); "
        "within >= 95.0% and <= 0.1"
    )
    assert result.thresholds() == {"min_agreement": 0.95, "max_distance": 0.1}
    assert result.values()["disagreements"] == []


def test_disagreements_lower_agreement_and_move_the_distance() -> None:
    """1 of 4 answers differs: 75 % agreement; the label mix moved by a quarter (TV 0.25)."""
    golden = golden_set(4)
    stable = [answer(predictions=["virginica"]) for _ in range(4)]
    candidate = [*stable[:3], answer(predictions=["versicolor"], model_version="v6")]
    result = run(golden, stable, candidate)
    assert not result.passed
    assert (result.agreement, result.distance) == (0.75, 0.25)
    assert result.reason == (
        "golden set: agreement 75.0% (3/4 answers) below 95.0%; "
        "distance 0.250 (predictions) over 0.1"
    )
    [case] = result.disagreements
    assert case.as_dict() == {
        "request": "#4",
        "item": None,
        "body": {"instances": [[3, 1, 1, 1]]},
        "stable": {"status": 200, "predictions": ["virginica"]},
        "candidate": {"status": 200, "predictions": ["versicolor"]},
        "detail": '$.predictions: ["versicolor"] from the candidate, ["virginica"] from stable',
    }


def test_same_mix_of_labels_in_other_places_has_zero_distance() -> None:
    """Swapped answers disagree, but the distributions are the same: distance 0."""
    golden = golden_set(2, min_agreement=0)
    a, b = answer(predictions=["setosa"]), answer(predictions=["virginica"])
    result = run(golden, [a, b], [b, a])
    assert (result.agreement, result.distance, result.passed) == (0.0, 0.0, True)


def test_batch_answers_are_compared_per_item_and_excerpts_show_the_instance() -> None:
    golden = GoldenSet.model_validate(
        {
            "requests": [
                {"name": "b1", "json": {"instances": [[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]]}}
            ],
            "fields": {"$.predictions": "exact"},
            "batch": True,
        }
    )
    stable = [answer(predictions=["setosa", "virginica", "virginica"])]
    candidate = [answer(predictions=["setosa", "versicolor", "virginica"])]
    result = run(golden, stable, candidate)
    assert (result.answers, result.agreed) == (3, 2)
    [case] = result.disagreements
    assert (case.request, case.item) == ("b1", 1)
    assert case.body == {"instances": [[2, 2, 2, 2]]}
    assert case.stable == {"status": 200, "$.predictions": "virginica"}
    assert case.candidate == {"status": 200, "$.predictions": "versicolor"}
    assert (
        case.detail == '$.predictions[1]: "versicolor" from the candidate, "virginica" from stable'
    )
    # A candidate answering another number of items disagrees on all of them.
    short = run(golden, stable, [answer(predictions=["setosa"])])
    assert (short.answers, short.agreed) == (3, 0)
    assert short.disagreements[0].detail == "candidate answered 1 items, stable 3"


def test_numeric_fields_within_tolerance_and_their_distance() -> None:
    """Numbers agree within the absolute tolerance; distance is the earth mover's, in units."""
    golden = golden_set(2, fields={"scores": {"tolerance": 0.01}}, max_distance=0.02)
    stable = [answer(scores=[0.9, 0.1]), answer(scores=[0.2, 0.8])]
    close = [answer(scores=[0.905, 0.095]), answer(scores=[0.2, 0.8])]
    result = run(golden, stable, close)
    assert result.passed and result.agreement == 1.0
    assert result.distance == pytest.approx(0.0025)
    far = [answer(scores=[0.95, 0.05]), answer(scores=[0.2, 0.8])]
    result = run(golden, stable, far)
    assert result.agreement == 0.5 and result.distance == pytest.approx(0.025)
    assert "beyond tolerance 0.01" in result.disagreements[0].detail
    assert result.reason.endswith("distance 0.025 (scores) over 0.02")


def test_distances() -> None:
    assert total_variation(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == 0.25
    assert total_variation(["a"], ["b"]) == 1.0
    assert total_variation([], ["a"]) is None
    assert wasserstein_1([0.0, 1.0], [0.0, 1.0]) == 0.0
    assert wasserstein_1([0.0], [0.5]) == 0.5
    assert wasserstein_1([0.0, 0.0, 1.0], [0.0, 1.0, 1.0]) == pytest.approx(1 / 3)
    assert wasserstein_1([], [1.0]) is None


def test_strings_and_numbers_are_not_the_same_label() -> None:
    golden = golden_set(1)
    result = run(golden, [answer(predictions=["1"])], [answer(predictions=[1])])
    assert result.agreement == 0.0


def test_statuses_errors_and_missing_fields() -> None:
    """Same refusal agrees; candidate errors disagree; stable errors are left out and counted."""
    golden = golden_set(5, min_agreement=0.5)
    good = answer(predictions=["setosa"])
    stable = [
        good,
        Answer(400, {"error": "bad input"}),
        good,
        Answer(error="request failed: ConnectError: refused"),
        good,
    ]
    candidate = [
        Answer(503, error="status 503"),
        Answer(400, {"error": "other words"}),
        Answer(200, {"labels": ["setosa"]}),
        good,
        good,
    ]
    result = run(golden, stable, candidate)
    assert (result.stable_errors, result.candidate_errors) == (1, 1)
    assert (result.compared_requests, result.answers, result.agreed) == (4, 4, 2)
    assert [d.detail for d in result.disagreements] == [
        "candidate: status 503",
        "candidate's answer lacks the compared fields (predictions present)",
    ]
    assert result.disagreements[0].candidate == {"status": 503, "error": "status 503"}
    assert result.passed and result.reason.endswith(
        "(candidate failed 1 of 5 requests; stable failed 1 of 5)"
    )


def test_no_baseline_when_stable_fails_most_requests() -> None:
    golden = golden_set(3)
    down = Answer(error="request failed: ConnectError: refused")
    good = answer(predictions=["setosa"])
    result = run(golden, [down, down, good], [good, good, good])
    assert not result.passed
    assert result.reason.startswith(
        "golden set: stable answered only 1 of 3 requests usably; no baseline to compare with"
    )


def test_disagreements_are_at_most_five_and_bounded_in_size() -> None:
    """Long requests and answers are cut; the decision log stays small whatever the answers."""
    golden = GoldenSet.model_validate(
        {
            "requests": [{"json": {"instances": [[1, 2, 3, 4]] * 500}} for _ in range(20)],
            "fields": {"predictions": "exact"},
        }
    )
    stable = [answer(predictions=["setosa"] * 500) for _ in range(20)]
    candidate = [answer(predictions=["virginica"] * 500) for _ in range(20)]
    result = run(golden, stable, candidate)
    assert len(result.disagreements) == MAX_DISAGREEMENTS
    for case in result.disagreements:
        for excerpt in (case.body, case.stable, case.candidate):
            assert isinstance(excerpt, str) and len(excerpt) <= 300 and "characters)" in excerpt
        assert len(case.detail) < 250
    assert len(json.dumps(result.values())) < 8000


def test_max_requests_replays_the_first_n() -> None:
    golden = golden_set(10, max_requests=3)
    assert [r.json_body["instances"][0][0] for r in golden.selected()] == [0, 1, 2]


# -- replay over HTTP ---------------------------------------------------------------------


def iris_like(request: httpx.Request) -> list[str]:
    """Species for each instance of a request body: by the first number (0 setosa, else virginica)."""
    instances = json.loads(request.content)["instances"]
    return ["setosa" if row[0] == 0 else "virginica" for row in instances]


def replay(
    handler: Callable[[httpx.Request], httpx.Response],
    golden: GoldenSet,
    stable_url: str,
    candidate_url: str,
    *,
    ingress_url: str | None = None,
) -> GoldenResult:
    """replay_golden() against a mock transport."""
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return replay_golden(
            client, stable_url, candidate_url, golden, ingress_url=ingress_url, timeout=1
        )


def test_replay_sends_every_request_to_both_tag_urls_through_the_ingress() -> None:
    """Each request reaches stable and candidate by Host through the ingress, concurrently."""
    seen: list[tuple[str, str, str, bytes]] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            seen.append(
                (request.headers["host"], request.method, request.url.path, request.content)
            )
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        predictions = iris_like(request)
        if request.headers["host"].startswith("candidate-") and predictions == ["virginica"]:
            predictions = ["versicolor"]
        return httpx.Response(200, json={"predictions": predictions})

    golden = GoldenSet.model_validate(
        {
            "requests": [
                {"json": {"instances": [[0, 1, 1, 1]]}},
                {"name": "v", "json": {"instances": [[5, 1, 1, 1]]}},
                {"name": "health", "method": "GET", "path": "/healthz"},
            ],
            "path": "/predict",
            "fields": {"predictions": "exact"},
            "concurrency": 3,
        }
    )
    result = replay(
        handler,
        golden,
        "http://stable-iris.models.example.com",
        "http://candidate-iris.models.example.com",
        ingress_url="http://127.0.0.1:1",
    )
    assert len(seen) == 6
    hosts = {host for host, *_ in seen}
    assert hosts == {"stable-iris.models.example.com", "candidate-iris.models.example.com"}
    assert sorted((m, p) for _, m, p, _ in seen) == [
        ("GET", "/healthz"),
        ("GET", "/healthz"),
        ("POST", "/predict"),
        ("POST", "/predict"),
        ("POST", "/predict"),
        ("POST", "/predict"),
    ]
    # The health answer has no predictions on either side: the stable cannot be a reference.
    assert (result.requests, result.compared_requests, result.stable_errors) == (3, 2, 1)
    assert (result.agreed, result.answers) == (1, 2)
    assert result.disagreements[0].request == "v"
    assert result.seconds is not None and "seconds" in result.values()


def test_replay_reports_connection_errors_per_side() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "candidate.test":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"predictions": iris_like(request)})

    golden = golden_set(4, path="/predict")
    result = replay(handler, golden, "http://stable.test", "http://candidate.test")
    assert (result.candidate_errors, result.stable_errors, result.agreed) == (4, 0, 0)
    assert not result.passed
    assert result.disagreements[0].detail == "candidate: request failed: ConnectError: refused"


def test_golden_request_lines_accept_optional_keys() -> None:
    line = GoldenRequest.model_validate({"json": 1})
    assert (line.name, line.method, line.path) == (None, None, None)
    assert line.to_line() == {"json": 1}


def test_replay_classifies_non_json_and_refusals() -> None:
    """A 2xx that is not JSON is the candidate's error; the same refusal from both agrees."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/bad":
            return httpx.Response(400, text="bad input")
        if request.url.host == "candidate.test":
            return httpx.Response(200, text="<html>")
        return httpx.Response(200, json={"predictions": iris_like(request)})

    golden = GoldenSet.model_validate(
        {
            "requests": [
                {"path": "/predict", "json": {"instances": [[0, 1, 1, 1]]}},
                {"path": "/bad", "json": {"instances": "x"}},
            ],
            "fields": {"predictions": "exact"},
            "min_agreement": 0.5,
        }
    )
    result = replay(handler, golden, "http://stable.test", "http://candidate.test")
    assert (result.agreed, result.answers, result.candidate_errors) == (1, 2, 1)
    assert result.disagreements[0].detail == "candidate: answer is not JSON"
    assert result.passed and result.distance is None
    assert "no distance measured" in result.reason
