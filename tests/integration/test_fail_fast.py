"""Fail fast, never hang: the real Firestore and Kubernetes clients against a port where nothing
listens and a listener that accepts and never answers give a retryable error within their timeout,
logged at ERROR with what to check; /healthz answers 503 naming what is down."""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from events.steps import StepEvent, StepType
from functions._steps import step_function
from shared.api import read
from shared.api.http import ApiRequest
from shared.api.serve import public_paths, serve
from shared.deps import Deps
from shared.errors import RetryableError
from shared.firestore_store import FirestoreStore
from shared.knative import KnativeServing, api_client
from shared.settings import Settings
from tests.fakes import REPOSITORY, STEP_ACTS, World, digest_of, pubsub_envelope, registry_message
from tests.unit.test_functions_pubsub import cloud_event, ingest_via_function

TIMEOUT = 1.0  # seconds: the configured bound under test
# Generous: the point is that the call ends (with the bounded error), not how fast to the ms.
pytestmark = pytest.mark.timeout(60)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stall:
    """A TCP listener that accepts every connection and never sends a byte."""

    port: int
    accepted: list[socket.socket]


@pytest.fixture
def stall() -> Iterator[Stall]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held = Stall(int(listener.getsockname()[1]), [])
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            held.accepted.append(connection)  # kept open, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield held
    stop.set()
    thread.join(timeout=5)
    for connection in held.accepted:
        connection.close()
    listener.close()


def firestore_at(port: int, monkeypatch: pytest.MonkeyPatch) -> FirestoreStore:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{port}")
    return FirestoreStore.for_project("hekaton-fail-fast", timeout_seconds=TIMEOUT)


def timed_retryable(call: object) -> tuple[RetryableError, float]:
    """Run `call`; it must raise RetryableError. Returns the error and the elapsed seconds."""
    started = time.monotonic()
    with pytest.raises(RetryableError) as raised:
        call()  # type: ignore[operator]
    elapsed = time.monotonic() - started
    print(f"bounded error after {elapsed:.2f}s: {raised.value}")  # the figure for the README
    return raised.value, elapsed


def error_logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(r.levelno == logging.ERROR and text in r.getMessage() for r in caplog.records)


def test_firestore_where_nothing_listens_is_a_bounded_retryable_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    store = firestore_at(port, monkeypatch)
    error, _ = timed_retryable(lambda: store.get_rollout("iris-r1"))
    assert f"127.0.0.1:{port}" in str(error) and "FIRESTORE_EMULATOR_HOST" in str(error)
    assert "HEKATON_FIRESTORE_TIMEOUT_SECONDS" in str(error)
    assert error_logged(caplog, "Firestore read got no answer")


def test_firestore_that_stalls_is_a_bounded_retryable_error(
    stall: Stall, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = firestore_at(stall.port, monkeypatch)
    error, _ = timed_retryable(lambda: store.list_dead_letters())
    assert f"127.0.0.1:{stall.port}" in str(error)
    assert stall.accepted, "the client never connected to the stalling listener"
    assert error_logged(caplog, "Firestore read got no answer")


def test_a_firestore_write_that_stalls_is_a_bounded_retryable_error(
    stall: Stall, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = firestore_at(stall.port, monkeypatch)
    world = World.create()
    world.register()
    service = world.store.get_service("iris")
    assert service is not None
    error, _ = timed_retryable(lambda: store.put_service(service.value, None))
    assert "Firestore write got no answer" in str(error)


def kube_at(port: int) -> KnativeServing:
    return KnativeServing(api_client(f"http://127.0.0.1:{port}", timeout_seconds=TIMEOUT))


def test_kubernetes_where_nothing_listens_is_a_bounded_retryable_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    error, _ = timed_retryable(lambda: kube_at(port).get_service("models", "iris"))
    assert f"http://127.0.0.1:{port}" in str(error) and "unreachable" in str(error)
    assert "HEKATON_KUBE_SERVER" in str(error) and "HEKATON_KUBE_TIMEOUT_SECONDS" in str(error)
    assert error_logged(caplog, "Kubernetes API at")


def test_kubernetes_that_stalls_is_a_bounded_retryable_error(
    stall: Stall, caplog: pytest.LogCaptureFixture
) -> None:
    error, _ = timed_retryable(lambda: kube_at(stall.port).get_service("models", "iris"))
    assert f"did not answer within {TIMEOUT}s" in str(error)
    assert stall.accepted
    assert error_logged(caplog, "did not answer")


def test_a_step_function_whose_cluster_stalls_raises_retryable_so_pubsub_redelivers(
    stall: Stall,
) -> None:
    """The deploy function, on a real (stalling) Kubernetes API: a retryable error, not a hang."""
    world = World.create()
    world.register()
    push = registry_message(
        "push-v1", digest=f"{REPOSITORY}@{digest_of('v1')}", tag=f"{REPOSITORY}:v1"
    )
    ingest_via_function(world, cloud_event(pubsub_envelope(push), event_id="push-v1"))
    published = world.publisher.sent[0]
    settings = Settings(project="hekaton-test", kube_timeout_seconds=TIMEOUT)
    deps = Deps(
        settings,
        store=world.store,
        publisher=world.publisher,
        clock=world.clock,
        serving=kube_at(stall.port),
    )
    event = cloud_event(
        pubsub_envelope(published.as_message()),
        topic=StepType.DEPLOY.topic,
        event_id=published.message_id,
    )
    timed_retryable(
        lambda: step_function(event, StepType.DEPLOY, STEP_ACTS[StepType.DEPLOY], dependencies=deps)
    )
    assert world.rollouts()[0].phase.value == "DEPLOYING"  # nothing moved: the redelivery will


def test_a_step_function_whose_firestore_is_unreachable_raises_retryable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deploy function with Firestore where nothing listens: a retryable error, not a hang."""
    store = firestore_at(closed_port(), monkeypatch)
    deps = Deps(Settings(project="hekaton-fail-fast"), store=store)
    body = StepEvent(StepType.DEPLOY, "iris-r1", "iris", "DEPLOYING", 0, "c").to_json("test")
    envelope = {
        "message": {"data": base64.b64encode(body).decode(), "messageId": "m-1"},
        "subscription": "projects/hekaton-fail-fast/subscriptions/hekaton-deploy-push",
    }
    event = cloud_event(envelope, topic=StepType.DEPLOY.topic, event_id="m-1")
    timed_retryable(
        lambda: step_function(event, StepType.DEPLOY, STEP_ACTS[StepType.DEPLOY], dependencies=deps)
    )


def test_healthz_names_each_dependency_that_is_down(
    stall: Stall, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real probes: Firestore where nothing listens, a stalling Kubernetes API → 503, both named."""
    nothing = closed_port()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{nothing}")
    settings = Settings(
        project="hekaton-fail-fast",
        kube_server=f"http://127.0.0.1:{stall.port}",
        health_timeout_seconds=TIMEOUT,
    )
    deps = Deps(settings)
    started = time.monotonic()
    response = serve(deps, ApiRequest("GET", "/healthz"), read.routes, public_paths("read"))
    print(f"/healthz answered {response.status} in {time.monotonic() - started:.2f}s")
    assert response.status == 503
    assert response.body["ok"] is False
    down = response.body["down"]
    assert set(down) == {"firestore", "kubernetes"}
    # Each reason says where, how long the check waited and its setting, and what to check.
    assert down["firestore"].startswith(
        f"Firestore emulator at 127.0.0.1:{nothing} (FIRESTORE_EMULATOR_HOST) gave no answer "
        f"(this check waits {TIMEOUT:g}s: HEKATON_HEALTH_TIMEOUT_SECONDS): check that it is up"
    )
    assert down["kubernetes"].startswith(
        f"Kubernetes API at http://127.0.0.1:{stall.port} (HEKATON_KUBE_SERVER) gave no answer "
        f"(this check waits {TIMEOUT:g}s: HEKATON_HEALTH_TIMEOUT_SECONDS): check that the cluster"
    )
    assert "HEKATON_KUBE_TIMEOUT_SECONDS" not in down["kubernetes"]
    assert set(response.body["seconds"]) == {"firestore", "kubernetes"}  # the down ones too
    assert response.body["seconds"]["kubernetes"] >= TIMEOUT * 0.9  # the stall, measured
