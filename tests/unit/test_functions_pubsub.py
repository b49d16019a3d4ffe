"""The functions layer: CloudEvents in, bad input recorded and acknowledged, retryable errors re-raised."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from events.pubsub import MAX_MESSAGE_BYTES, PUBSUB_EVENT_TYPE, PubSubMessage
from events.steps import StepEvent, StepType
from functions._runtime import handle_pubsub
from functions._steps import step_function
from shared.errors import PermanentError, RetryableError
from shared.phases import Phase
from shared.steps import ingest, rollback
from tests.fakes import (
    REPOSITORY,
    STEP_ACTS,
    World,
    digest_of,
    pubsub_envelope,
    registry_message,
)


def cloud_event(
    data: Any, *, topic: str = "gcr", event_id: str = "ce-1", type_: str = PUBSUB_EVENT_TYPE
) -> CloudEvent:
    """A CloudEvent as Eventarc (or functions-framework's push conversion) delivers it."""
    attributes = {
        "type": type_,
        "source": f"//pubsub.googleapis.com/projects/hekaton-test/topics/{topic}",
        "id": event_id,
        "specversion": "1.0",
    }
    return CloudEvent(attributes, data)


def raw_event(body: bytes, *, topic: str = "gcr", message_id: str = "m-1") -> CloudEvent:
    """A CloudEvent around an arbitrary Pub/Sub payload."""
    envelope = {
        "message": {"data": base64.b64encode(body).decode(), "messageId": message_id},
        "subscription": "projects/hekaton-test/subscriptions/eventarc",
    }
    return cloud_event(envelope, topic=topic, event_id=message_id)


def registry_event(message: PubSubMessage) -> CloudEvent:
    """A registry notification as ingest receives it."""
    return cloud_event(pubsub_envelope(message), event_id=message.message_id)


def ingest_via_function(world: World, event: CloudEvent) -> Any:
    """Run the ingest function's work on a CloudEvent with the world's dependencies."""
    return handle_pubsub(event, "ingest", ingest.handle, dependencies=world.deps)


@pytest.fixture
def world() -> World:
    """iris registered (tag filter v<digits>), no rollouts yet."""
    created = World.create()
    created.register()
    return created


def the_only_ignored(world: World) -> Any:
    """The single ignored-message record."""
    ignored = world.store.list_ignored()
    assert len(ignored) == 1, ignored
    return ignored[0]


def assert_nothing_happened(world: World) -> None:
    """No rollout, no published event, no cluster call."""
    assert world.rollouts() == []
    assert world.publisher.sent == []
    assert world.serving.calls == []


BAD_REGISTRY_INPUT = [
    pytest.param(
        b"\x00\x01 not json", "Artifact Registry notification is not JSON", id="undecodable"
    ),
    pytest.param(
        json.dumps({"action": "INSERT", "digest": f"r.io/other/model@{digest_of('x')}"}).encode(),
        "no registered service follows repository r.io/other/model",
        id="unknown-repository",
    ),
    pytest.param(
        json.dumps(
            {
                "action": "INSERT",
                "digest": f"{REPOSITORY}@{digest_of('latest')}",
                "tag": f"{REPOSITORY}:latest",
            }
        ).encode(),
        "tag 'latest' does not match iris's tag filter 'v\\\\d+'",
        id="tag-outside-filter",
    ),
    pytest.param(
        json.dumps({"action": "DELETE", "tag": f"{REPOSITORY}:v1"}).encode(),
        f"DELETE of {REPOSITORY}:v1: hekaton does not act on deletions",
        id="delete",
    ),
    pytest.param(
        json.dumps({"action": "INSERT", "tag": f"{REPOSITORY}:v1"}).encode(),
        f"INSERT of {REPOSITORY}:v1 without a digest: nothing immutable to deploy",
        id="digest-less-insert",
    ),
    pytest.param(
        json.dumps({"action": "PATCH", "tag": f"{REPOSITORY}:v1"}).encode(),
        "unknown action 'PATCH'",
        id="unknown-action",
    ),
]


@pytest.mark.parametrize(("body", "reason"), BAD_REGISTRY_INPUT)
def test_bad_registry_input_is_recorded_and_acknowledged(
    world: World, body: bytes, reason: str
) -> None:
    """Each bad push is answered with a recorded reason; redelivering it changes nothing."""
    event = raw_event(body, message_id="bad-1")
    ingest_via_function(world, event)  # returns normally: Pub/Sub acknowledges
    ingest_via_function(world, event)  # a redelivery is recorded once, not twice
    ignored = the_only_ignored(world)
    assert reason in ignored.reason
    assert ignored.function == "ingest" and ignored.message_id.startswith("bad-1")
    assert ignored.topic == "gcr" and ignored.excerpt == body[:200].decode(errors="replace")
    assert_nothing_happened(world)


def test_cloudevent_of_an_unknown_type_is_recorded(world: World) -> None:
    """A CloudEvent that is not a Pub/Sub message is refused by type, without touching its data."""
    event = cloud_event({"bucket": "b"}, type_="google.cloud.storage.object.v1.finalized")
    assert ingest_via_function(world, event) is None
    ignored = the_only_ignored(world)
    assert ignored.reason == (
        "unexpected CloudEvent type 'google.cloud.storage.object.v1.finalized'; "
        f"expected {PUBSUB_EVENT_TYPE}"
    )
    assert_nothing_happened(world)


def test_huge_payload_is_recorded_without_its_body(world: World) -> None:
    """A payload over the limit is refused before decoding; the record keeps no excerpt."""
    event = raw_event(b"x" * (MAX_MESSAGE_BYTES + 10), message_id="huge")
    assert ingest_via_function(world, event) is None
    ignored = the_only_ignored(world)
    assert "too large" in ignored.reason and ignored.message_id == "huge"
    assert ignored.excerpt == ""
    assert_nothing_happened(world)


def test_envelope_without_a_message_is_recorded(world: World) -> None:
    """Data that is not a Pub/Sub envelope is refused with the CloudEvent id."""
    assert ingest_via_function(world, cloud_event({"hello": "world"}, event_id="ce-9")) is None
    ignored = the_only_ignored(world)
    assert (ignored.message_id, ignored.reason) == (
        "ce-9",
        "CloudEvent data is not a Pub/Sub envelope: missing object 'message'",
    )


def step_event(world: World, body: bytes, step: StepType, message_id: str = "s-1") -> Any:
    """Deliver a raw body to a step function."""
    return step_function(
        raw_event(body, topic=step.topic, message_id=message_id),
        step,
        STEP_ACTS[step],
        dependencies=world.deps,
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"{oops", "step event is not JSON", id="not-json"),
        pytest.param(
            json.dumps({"specversion": "1.0", "type": "dev.hekaton.rollout.explode.v1"}).encode(),
            "unknown CloudEvent type 'dev.hekaton.rollout.explode.v1'",
            id="unknown-step-type",
        ),
        pytest.param(
            StepEvent(StepType.PROMOTE, "r-1", "iris", "PROMOTING", 0, "c").to_json("x"),
            "CloudEvent type 'dev.hekaton.rollout.promote.v1' delivered to the deploy step",
            id="wrong-step",
        ),
    ],
)
def test_bad_step_events_are_recorded_and_acknowledged(
    world: World, body: bytes, reason: str
) -> None:
    """Malformed step events are recorded under the step's function name and acknowledged."""
    assert step_event(world, body, StepType.DEPLOY) is None
    ignored = the_only_ignored(world)
    assert reason in ignored.reason and ignored.function == "deploy"
    assert ignored.topic == StepType.DEPLOY.topic
    assert_nothing_happened(world)


def test_step_event_for_an_unknown_rollout_is_recorded_and_acknowledged(world: World) -> None:
    """A well-formed event naming no rollout changes nothing, is recorded with a reason, not retried."""
    body = StepEvent(StepType.DEPLOY, "iris-gone-000000", "iris", "DEPLOYING", 0, "c").to_json("x")
    report = step_event(world, body, StepType.DEPLOY)
    assert report is None
    ignored = world.store.list_ignored()
    assert len(ignored) == 1 and "unknown rollout 'iris-gone-000000'" in ignored[0].reason
    assert_nothing_happened(world)


def test_retryable_store_error_propagates_so_pubsub_redelivers(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient Firestore failure is raised out of the function (HTTP 500 → redelivery)."""

    def unavailable(repository: str) -> Any:
        raise RetryableError("Firestore read failed transiently: 503")

    monkeypatch.setattr(world.store, "services_for_repository", unavailable)
    message = registry_message(
        "push-v1", digest=f"{REPOSITORY}@{digest_of('v1')}", tag=f"{REPOSITORY}:v1"
    )
    with pytest.raises(RetryableError, match="transiently"):
        ingest_via_function(world, registry_event(message))
    assert world.store.list_ignored() == []


def test_retryable_cluster_error_in_a_step_propagates(world: World) -> None:
    """The deploy step re-raises a retryable Kubernetes error; the rollout stays DEPLOYING."""
    message = registry_message(
        "push-v1", digest=f"{REPOSITORY}@{digest_of('v1')}", tag=f"{REPOSITORY}:v1"
    )
    ingest_via_function(world, registry_event(message))
    published = world.publisher.sent[0]
    world.serving.fail_next("deploy", RetryableError("Kubernetes API unreachable"))
    event = cloud_event(
        pubsub_envelope(published.as_message()),
        topic=StepType.DEPLOY.topic,
        event_id=published.message_id,
    )
    with pytest.raises(RetryableError, match="unreachable"):
        step_function(event, StepType.DEPLOY, STEP_ACTS[StepType.DEPLOY], dependencies=world.deps)
    assert world.rollouts()[0].phase is Phase.DEPLOYING
    # The redelivery succeeds.
    report = step_function(
        event, StepType.DEPLOY, STEP_ACTS[StepType.DEPLOY], dependencies=world.deps
    )
    assert report is not None and report.status == "applied"


def test_a_duplicate_step_event_is_recorded_as_ignored_once_per_message(world: World) -> None:
    """A redelivered step event that no longer applies is kept with its reason, one record per id."""
    message = registry_message(
        "push-v1", digest=f"{REPOSITORY}@{digest_of('v1')}", tag=f"{REPOSITORY}:v1"
    )
    ingest_via_function(world, registry_event(message))
    published = world.publisher.sent[0]
    event = cloud_event(
        pubsub_envelope(published.as_message()),
        topic=StepType.DEPLOY.topic,
        event_id=published.message_id,
    )
    deploy = STEP_ACTS[StepType.DEPLOY]
    first = step_function(event, StepType.DEPLOY, deploy, dependencies=world.deps)
    assert first is not None and first.status == "applied"
    assert world.store.list_ignored() == []
    for _ in range(3):  # Pub/Sub redelivers the same message
        again = step_function(event, StepType.DEPLOY, deploy, dependencies=world.deps)
        assert again is not None and again.status == "stale"
    ignored = the_only_ignored(world)
    assert ignored.function == "deploy" and ignored.message_id == published.message_id
    assert "stale or duplicate step event" in ignored.reason
    assert "rollout is WAITING_READY, event was for DEPLOYING" in ignored.reason
    assert ignored.topic == StepType.DEPLOY.topic


def test_permanent_failure_is_recorded_and_acknowledged(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PermanentError from the work is recorded with its reason, never retried."""

    def refuse(repository: str) -> Any:
        raise PermanentError("the service record is corrupt")

    monkeypatch.setattr(world.store, "services_for_repository", refuse)
    message = registry_message(
        "push-v1", digest=f"{REPOSITORY}@{digest_of('v1')}", tag=f"{REPOSITORY}:v1"
    )
    assert ingest_via_function(world, registry_event(message)) is None
    ignored = the_only_ignored(world)
    assert ignored.reason == "permanent failure: the service record is corrupt"
    assert ignored.message_id == "push-v1" and '"action": "INSERT"' in ignored.excerpt


def test_rollback_request_for_unknown_service_is_recorded(world: World) -> None:
    """An operator request naming no registered service is answered, not retried."""
    event = raw_event(b'{"service": "nope"}', topic="hekaton-rollback", message_id="rb-1")
    assert handle_pubsub(event, "rollback", rollback.handle, dependencies=world.deps) is None
    assert the_only_ignored(world).reason == "rollback names unknown service 'nope'"


def test_a_push_runs_to_promoted_through_the_function_entry_points(world: World) -> None:
    """Registry CloudEvent → ingest → each published step as a CloudEvent → PROMOTED."""
    message = registry_message(
        "push-v1", digest=f"{REPOSITORY}@{digest_of('v1')}", tag=f"{REPOSITORY}:v1"
    )
    report = ingest_via_function(world, registry_event(message))
    assert len(report.started) == 1 and report.ignored == []
    delivered = 0
    while delivered < len(world.publisher.sent):
        published = world.publisher.sent[delivered]
        delivered += 1
        step = published.event.type
        event = cloud_event(
            pubsub_envelope(published.as_message()), topic=step.topic, event_id=published.message_id
        )
        result = step_function(event, step, STEP_ACTS[step], dependencies=world.deps)
        assert result is not None and result.status == "applied"
    assert [p.event.type for p in world.publisher.sent] == [
        StepType.DEPLOY,
        StepType.WAIT_READY,
        StepType.VALIDATE,
        StepType.PROMOTE,
    ]
    assert world.rollouts()[0].phase is Phase.PROMOTED
    assert world.store.list_ignored() == []
