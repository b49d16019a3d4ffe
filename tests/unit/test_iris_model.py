"""The iris example model: classifier, input validation, version behaviours and its HTTP answers."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from examples.iris import make_golden, server
from examples.iris.behaviour import BadBehaviour, Behaviour, FaultPlan
from examples.iris.model import BadInput, Measurements, parse_instances, predict
from shared.golden import GoldenResult, replay_golden
from shared.spec import load_spec
from shared.validation import run_checks

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Rows 1, 2, 50, 51, 52, 100, 101, 102 and 150 of Fisher's Iris data set.
CANONICAL: list[tuple[Measurements, str]] = [
    ((5.1, 3.5, 1.4, 0.2), "setosa"),
    ((4.9, 3.0, 1.4, 0.2), "setosa"),
    ((5.0, 3.3, 1.4, 0.2), "setosa"),
    ((7.0, 3.2, 4.7, 1.4), "versicolor"),
    ((6.4, 3.2, 4.5, 1.5), "versicolor"),
    ((5.7, 2.8, 4.1, 1.3), "versicolor"),
    ((6.3, 3.3, 6.0, 2.5), "virginica"),
    ((5.8, 2.7, 5.1, 1.9), "virginica"),
    ((5.9, 3.0, 5.1, 1.8), "virginica"),
]


def catalog_env(tag: str) -> dict[str, str]:
    """The environment examples/catalog.yaml publishes for one iris tag."""
    data = yaml.safe_load((EXAMPLES / "catalog.yaml").read_text(encoding="utf-8"))
    return dict(data["images"]["us-docker.pkg.dev/demo/models/iris"][tag]["env"])


def test_canonical_examples_are_classified_correctly() -> None:
    measurements = [m for m, _ in CANONICAL]
    assert predict(measurements) == [species for _, species in CANONICAL]


def test_named_features_mean_the_same_as_positional_ones() -> None:
    named = {"sepal_length": 7.0, "sepal_width": 3.2, "petal_length": 4.7, "petal_width": 1.4}
    assert parse_instances({"instances": [named]}) == parse_instances(
        {"instances": [[7.0, 3.2, 4.7, 1.4]]}
    )


def test_v3_answers_but_every_prediction_is_wrong() -> None:
    shift = Behaviour.from_env(catalog_env("v3")).label_shift
    wrong = predict([m for m, _ in CANONICAL], label_shift=shift)
    assert all(got != species for got, (_, species) in zip(wrong, CANONICAL, strict=True))
    assert set(wrong) <= {"setosa", "versicolor", "virginica"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([1, 2], '"instances" list'),
        ({"inputs": []}, '"instances" list'),
        ({"instances": []}, "non-empty"),
        ({"instances": [[5.1, 3.5, 1.4]]}, r"instances\[0\] has 3 values; expected 4"),
        ({"instances": [[5.1, 3.5, 1.4, "wide"]]}, r"instances\[0\]\[3\] must be a number"),
        ({"instances": [[5.1, 3.5, 1.4, True]]}, r"instances\[0\]\[3\] must be a number"),
        ({"instances": [[5.1, 3.5, -1.4, 0.2]]}, r"instances\[0\]\[2\] must be a finite"),
        ({"instances": [[5.1, 3.5, float("nan"), 0.2]]}, r"instances\[0\]\[2\] must be a finite"),
        ({"instances": [{"sepal_length": 5.1}]}, r"instances\[0\] is missing sepal_width"),
        ({"instances": ["x"]}, r"instances\[0\] must be a list of 4 numbers"),
        ({"instances": [[1, 1, 1, 1]] * 100_001}, "at most 100000"),
    ],
)
def test_bad_input_is_refused_naming_the_problem(body: Any, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        parse_instances(body)


def test_v5_serves_its_warmup_then_fails_every_fourth_request_slowly() -> None:
    behaviour = Behaviour.from_env(catalog_env("v5"))
    plan = FaultPlan(behaviour)
    faults = [plan.next() for _ in range(behaviour.warmup_requests + 40)]
    warmup, after = faults[: behaviour.warmup_requests], faults[behaviour.warmup_requests :]

    assert behaviour.warmup_requests > 0
    assert all(not f.fail and f.delay_seconds == 0 for f in warmup)
    assert [i for i, f in enumerate(after, 1) if f.fail] == list(range(4, 41, 4))
    assert all(0.150 <= f.delay_seconds <= 0.300 for f in after)
    # Seeded: the same version draws the same delays.
    again = FaultPlan(behaviour)
    assert [again.next() for _ in range(len(faults))] == faults


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"IRIS_FAIL_EVERY": "often"}, "IRIS_FAIL_EVERY='often' is not an integer"),
        ({"IRIS_WARMUP_REQUESTS": "-1"}, "IRIS_WARMUP_REQUESTS='-1' must be at least 0"),
        ({"IRIS_LATENCY_MS": "fast"}, "IRIS_LATENCY_MS='fast' must be milliseconds"),
        ({"IRIS_LATENCY_MS": "300-150"}, "IRIS_LATENCY_MS='300-150' must be a non-negative"),
    ],
)
def test_bad_behaviour_settings_are_named(env: dict[str, str], problem: str) -> None:
    with pytest.raises(BadBehaviour, match=problem):
        Behaviour.from_env(env)


def test_v4_exits_1_with_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in catalog_env("v4").items():
        monkeypatch.setenv(name, value)
    assert server.main() == 1
    assert "cannot load model weights" in capsys.readouterr().err


# -- over HTTP (an in-process server on a loopback port) ----------------------------------


@contextlib.contextmanager
def serving(tag: str) -> Iterator[http.client.HTTPConnection]:
    """A keep-alive connection to an in-process iris server configured as catalog `tag`."""
    httpd = server.make_server("127.0.0.1", 0, Behaviour.from_env(catalog_env(tag)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    connection = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=5)
    try:
        yield connection
    finally:
        connection.close()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def iris_v1() -> Iterator[http.client.HTTPConnection]:
    """A connection to iris v1."""
    with serving("v1") as connection:
        yield connection


def call(
    connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, Any]:
    """One request; returns the status and the decoded JSON answer."""
    connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_http_predict_health_and_bad_input(iris_v1: http.client.HTTPConnection) -> None:
    assert call(iris_v1, "GET", "/healthz") == (200, {"status": "ok", "model_version": "v1"})
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]}).encode()
    assert call(iris_v1, "POST", "/predict", body) == (
        200,
        {"predictions": ["setosa", "virginica"], "model_version": "v1"},
    )
    status, answer = call(iris_v1, "POST", "/predict", b'{"instances": [[1, 2]]}')
    assert status == 400 and "expected 4" in answer["error"]
    status, answer = call(iris_v1, "POST", "/predict", b"not json")
    assert status == 400 and "not JSON" in answer["error"]
    # A 404 with a body must not poison the keep-alive connection for the next request.
    status, _ = call(iris_v1, "POST", "/nowhere", b'{"instances": []}')
    assert status == 404
    assert call(iris_v1, "GET", "/healthz")[0] == 200


@contextlib.contextmanager
def serving_url(tag: str) -> Iterator[str]:
    """The base URL of an in-process iris server configured as catalog `tag`."""
    httpd = server.make_server("127.0.0.1", 0, Behaviour.from_env(catalog_env(tag)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("tag", "should_pass"),
    [("v1", True), ("v2", True), ("v3", False), ("v5", True), ("v6", True)],
)
def test_shipped_smoke_checks_pass_v1_v2_v5_v6_and_catch_v3(tag: str, should_pass: bool) -> None:
    """service.yaml's smoke requests, large batch included, sent over HTTP as the step sends them."""
    spec = load_spec(EXAMPLES / "iris" / "service.yaml")
    with serving_url(tag) as url, httpx.Client() as client:
        results = run_checks(client, url, spec.validation.requests, ingress_url=None, timeout=10)
    assert [r.name for r in results][-1] == "large-batch"
    assert all(r.passed for r in results) is should_pass, results
    if tag == "v3":
        assert not any(r.passed for r in results if r.name != "rejects-bad-input")


def golden_agreement(stable: str, candidate: str) -> GoldenResult:
    """service.yaml's golden set replayed against two iris versions."""
    golden = load_spec(EXAMPLES / "iris" / "service.yaml").validation.golden
    assert golden is not None
    with serving_url(stable) as s, serving_url(candidate) as c, httpx.Client() as client:
        return replay_golden(client, s, c, golden, ingress_url=None, timeout=5)


def test_v1_and_v2_agree_on_the_whole_golden_set() -> None:
    result = golden_agreement("v2", "v1")
    assert result.passed, result.reason
    assert (result.agreement, result.distance, result.answers) == (1.0, 0.0, 120)
    assert result.disagreements == [] and result.stable_errors == result.candidate_errors == 0


def test_v6_disagrees_with_v2_on_a_good_share_of_the_golden_set() -> None:
    """v6 calls about a fifth of the flowers versicolor that v2 calls virginica: gate fails."""
    result = golden_agreement("v2", "v6")
    assert not result.passed
    assert result.agreement is not None and 0.6 <= result.agreement <= 0.8
    assert result.agreement < result.min_agreement
    assert result.distance is not None and result.distance > result.max_distance
    assert len(result.disagreements) == 5
    case = result.disagreements[0]
    assert (case.stable["predictions"], case.candidate["predictions"]) == (
        "virginica",
        "versicolor",
    )
    assert result.reason.startswith("golden set: agreement 77.5% (93/120 answers) below 95.0%")


def test_golden_file_is_what_the_generator_writes() -> None:
    """examples/iris/golden.jsonl is reproducible, and every flower is in its species' region."""
    text = (EXAMPLES / "iris" / "golden.jsonl").read_text(encoding="utf-8")
    assert text == "\n".join(make_golden.lines()) + "\n"
    drawn = make_golden.flowers()
    assert predict([m for m, _ in drawn]) == [species for _, species in drawn]
    assert len(text.splitlines()) == 8 and len(drawn) == 120


def test_v6_moves_only_the_versicolor_virginica_boundary() -> None:
    """Setosa and the canonical examples stay; flowers near the boundary turn versicolor."""
    shift = Behaviour.from_env(catalog_env("v6")).boundary_shift
    assert shift > 0
    measurements = [m for m, _ in CANONICAL]
    shifted = predict(measurements, boundary_shift=shift)
    assert [s for s, (_, species) in zip(shifted, CANONICAL, strict=True) if s != species] == [
        "versicolor",
        "versicolor",
    ]  # rows 102 and 150 of Fisher's data (petal length 5.1)
    assert predict([(6.9, 3.1, 5.8, 2.2)], boundary_shift=shift) == ["virginica"]
    with pytest.raises(BadBehaviour, match="IRIS_BOUNDARY_SHIFT='wide' is not a number"):
        Behaviour.from_env({"IRIS_BOUNDARY_SHIFT": "wide"})


def test_a_near_limit_batch_is_answered() -> None:
    """The server takes a body just under hekaton's 1.5 MB default request limit."""
    instances = [[5.1, 3.5, 1.4, 0.2]] * 83_332
    body = json.dumps({"instances": instances}, separators=(",", ":")).encode()
    assert 1_400_000 < len(body) <= 1_500_000 <= server.MAX_BODY_BYTES
    with serving("v1") as connection:
        status, answer = call(connection, "POST", "/predict", body)
    assert status == 200 and len(answer["predictions"]) == 83_332
