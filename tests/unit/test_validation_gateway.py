"""Validation end to end on loopback: the real local gateway in front of real iris servers.

The candidate and stable revisions are in-process iris servers; a stub runtime tells the gateway
their ports (and whether they are ready), so the requests take the production path: tag host
through the ingress, the gateway's body limit, the iris server's own limits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from examples.iris import server
from examples.iris.behaviour import Behaviour
from local.kube.contracts import RevisionPhase, RevisionSpec, RevisionState, RouteTarget
from local.kube.gateway import Gateway
from shared.golden import replay_golden
from shared.spec import SpecError, load_spec, parse_spec
from shared.validation import Verdict, decide, run_checks
from tests.fakes import iris_spec

SPEC_FILE = Path(__file__).resolve().parents[2] / "examples" / "iris" / "service.yaml"
STABLE_URL = "http://stable-iris.models.example.com"
CANDIDATE_URL = "http://candidate-iris.models.example.com"
FLOWER = [5.1, 3.5, 1.4, 0.2]


class StubRuntime:
    """The RevisionRuntime the gateway asks for ports: revisions are servers started by the test."""

    def __init__(self) -> None:
        self.states: dict[str, RevisionState] = {}

    def ensure_running(self, spec: RevisionSpec) -> None:
        """Not used: the test starts the servers."""

    def state(self, namespace: str, revision: str) -> RevisionState | None:
        """What the test set for this revision."""
        return self.states.get(revision)

    def stop(self, namespace: str, revision: str) -> None:
        """Not used."""

    def stop_all(self) -> None:
        """Not used."""

    def set_listener(self, listener: Callable[[str, str], None]) -> None:
        """Not used."""


@dataclass
class Stack:
    """The gateway, its runtime stub, and the iris servers behind it."""

    gateway: Gateway
    runtime: StubRuntime
    ports: dict[str, int]

    def ready(self, revision: str) -> None:
        self.runtime.states[revision] = RevisionState(
            RevisionPhase.READY, port=self.ports[revision]
        )

    def cold(self, revision: str) -> None:
        self.runtime.states[revision] = RevisionState(RevisionPhase.PENDING)


@pytest.fixture
def stack() -> Iterator[Stack]:
    """iris v2 as stable and v6 as candidate (0 %, by tag), behind a gateway with its default limit."""
    servers = {
        "iris-v2": server.make_server("127.0.0.1", 0, Behaviour(version="v2")),
        "iris-v6": server.make_server("127.0.0.1", 0, Behaviour(version="v6", boundary_shift=0.8)),
    }
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05})
        for s in servers.values()
    ]
    for thread in threads:
        thread.start()
    runtime = StubRuntime()
    gateway = Gateway("127.0.0.1", 0, runtime, "example.com")
    gateway.set_routes(
        "models",
        "iris",
        [RouteTarget("iris-v2", 100, "stable"), RouteTarget("iris-v6", 0, "candidate")],
    )
    gateway.start()
    result = Stack(gateway, runtime, {name: s.server_address[1] for name, s in servers.items()})
    for name in servers:
        result.ready(name)
    try:
        yield result
    finally:
        gateway.stop()
        for s in servers.values():
            s.shutdown()
            s.server_close()
        for thread in threads:
            thread.join(timeout=5)


def near_limit_request(times: int) -> dict[str, object]:
    """A smoke request of `times` flowers whose every prediction must be setosa."""
    return {
        "name": "near-limit",
        "path": "/predict",
        "json": {"instances": [FLOWER]},
        "repeat": {"field": "instances", "times": times},
        "expect": {
            "status": 200,
            "headers": {"content-type": "application/json"},
            "schema": {
                "type": "object",
                "properties": {
                    "predictions": {
                        "minItems": times,
                        "maxItems": times,
                        "items": {"const": "setosa"},
                    }
                },
            },
        },
    }


def test_a_request_near_the_limit_passes_end_to_end_and_one_over_is_refused(stack: Stack) -> None:
    """The largest body under validation.max_request_bytes is accepted at register and answered;
    one more flower is refused at register, naming the field."""
    limit = 1_500_000
    one = len(b'{"instances":[[5.1,3.5,1.4,0.2]]}')
    times = (limit - one) // len(b"[5.1,3.5,1.4,0.2],") + 1
    spec = parse_spec(iris_spec(validation={"requests": [near_limit_request(times)]}))
    with httpx.Client() as client:
        [result] = run_checks(
            client,
            CANDIDATE_URL,
            spec.validation.requests,
            ingress_url=stack.gateway.url,
            timeout=30,
        )
    assert result.passed, result.problems
    assert result.request_bytes is not None and limit - 18 < result.request_bytes <= limit
    assert result.bytes is not None and result.bytes > times * 9
    with pytest.raises(SpecError, match=r"validation\.requests\.0\.json: the request body .* over"):
        parse_spec(iris_spec(validation={"requests": [near_limit_request(times + 1)]}))


def test_the_shipped_spec_passes_v6_smoke_checks_and_its_golden_set_catches_v6(
    stack: Stack,
) -> None:
    """Every smoke request of service.yaml passes on v6 through the gateway; golden agreement fails."""
    spec = load_spec(SPEC_FILE)
    golden = spec.validation.golden
    assert golden is not None
    with httpx.Client() as client:
        results = run_checks(
            client,
            CANDIDATE_URL,
            spec.validation.requests,
            ingress_url=stack.gateway.url,
            timeout=10,
        )
        assert all(r.passed for r in results), [r.problems for r in results]
        verdict = replay_golden(
            client, STABLE_URL, CANDIDATE_URL, golden, ingress_url=stack.gateway.url, timeout=5
        )
    assert not verdict.passed and verdict.agreement is not None and verdict.agreement < 0.95
    assert (verdict.stable_errors, verdict.candidate_errors) == (0, 0)


def test_a_cold_candidate_is_retried_until_ready(stack: Stack) -> None:
    """503 from the gateway while the revision is not ready: RETRY_LATER; once ready: PASSED."""
    spec = load_spec(SPEC_FILE)
    small = [r for r in spec.validation.requests if r.name != "large-batch"]
    started = datetime(2026, 1, 1, tzinfo=UTC)
    stack.cold("iris-v6")
    with httpx.Client() as client:
        first = run_checks(client, CANDIDATE_URL, small, ingress_url=stack.gateway.url, timeout=5)
        decision = decide(
            first, started_at=started, now=started, attempt=1, validation=spec.validation
        )
        assert decision.verdict is Verdict.RETRY_LATER and decision.retry_at is not None
        assert "status 503, expected 200" in decision.reason
        stack.ready("iris-v6")
        second = run_checks(client, CANDIDATE_URL, small, ingress_url=stack.gateway.url, timeout=5)
    decision = decide(
        second, started_at=started, now=decision.retry_at, attempt=2, validation=spec.validation
    )
    assert decision.verdict is Verdict.PASSED
    assert decision.reason == "4 smoke request(s) passed after 2 attempts"
    # Had it stayed cold, the deadline would have ended it.
    late = started + timedelta(seconds=spec.validation.warmup_seconds)
    assert (
        decide(first, started_at=started, now=late, attempt=9, validation=spec.validation).verdict
        is Verdict.FAILED
    )
