"""Publishing the next step: a Protocol, and the Pub/Sub implementation tuned for latency."""

from __future__ import annotations

from typing import Protocol

from events import trace
from events.steps import StepEvent
from events.transitions import EVENTS_TOPIC, TRANSITION_TYPE, TransitionEvent
from shared import metering
from shared.errors import RetryableError


def publish_failure(project: str, topic: str, exc: BaseException) -> str:
    """What failed when publishing to `topic`, and what to check."""
    from google.api_core import exceptions as google_errors  # imported when something failed

    what = f"publish to topic {topic} of project {project} failed ({type(exc).__name__}: {exc})"
    if isinstance(exc, google_errors.PermissionDenied | google_errors.Forbidden):
        return (
            f"{what}: this function's service account needs roles/pubsub.publisher on {topic} "
            "(`./deploy.sh gcp` grants what functions/manifest.py lists)"
        )
    if isinstance(exc, google_errors.NotFound):
        return f"{what}: the topic does not exist (`./deploy.sh gcp` creates it)"
    return f"{what}: check that Pub/Sub is reachable"


def step_attributes(event: StepEvent) -> dict[str, str]:
    """The Pub/Sub attributes of a step event's message (the same whoever publishes it)."""
    return {
        "ce-type": event.type.value,
        "rollout": event.rollout_id,
        "service": event.service,
        trace.ATTRIBUTE: trace.for_rollout(event.rollout_id).header(),
    }


class Publisher(Protocol):
    """Sends step events to their topics."""

    def publish_step(self, event: StepEvent, *, source: str) -> str:
        """Publish and wait for the server's ack; return the message id."""
        ...

    def publish_transition(self, event: TransitionEvent) -> str:
        """Publish a notification on `hekaton-events`; return the message id."""
        ...

    def publish_raw(
        self,
        topic: str,
        data: bytes,
        attributes: dict[str, str] | None = None,
        *,
        timeout: float = 30,
    ) -> str:
        """Publish bytes with attributes to a topic of this project; return the message id."""
        ...


class PubSubPublisher:
    """google-cloud-pubsub publisher (honours PUBSUB_EMULATOR_HOST)."""

    def __init__(self, project: str, max_latency_seconds: float = 0.005) -> None:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

        self._project = project
        # One message per step; waiting for a batch to fill only adds latency to every rollout.
        self._client = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(
                max_messages=10, max_latency=max_latency_seconds
            )
        )

    def publish_step(self, event: StepEvent, *, source: str) -> str:
        """Publish and wait for the server's ack; return the message id (in the rollout's trace)."""
        traceparent = trace.for_rollout(event.rollout_id).header()
        return self.publish_raw(
            event.type.topic,
            event.to_json(source, traceparent=traceparent),
            step_attributes(event),
        )

    def publish_transition(self, event: TransitionEvent) -> str:
        """Publish a notification on `hekaton-events` (a short wait: a notification never holds a step)."""
        return self.publish_raw(
            EVENTS_TOPIC,
            event.to_json(),
            {
                "ce-type": TRANSITION_TYPE,
                "ce-id": event.id,
                "rollout": event.rollout_id,
                "service": event.service,
                trace.ATTRIBUTE: trace.for_rollout(event.rollout_id).header(),
            },
            timeout=10,
        )

    def publish_raw(
        self,
        topic: str,
        data: bytes,
        attributes: dict[str, str] | None = None,
        *,
        timeout: float = 30,
    ) -> str:
        """Publish bytes to a topic of this project and wait for the ack.

        A refusal or a timeout is a RetryableError saying what to check (the caller's retry
        path: Pub/Sub redelivers a step, an API answers 503), never a bare client exception.
        """
        from google.api_core import exceptions as google_errors

        metering.count(metering.MESSAGES_PUBLISHED)
        try:
            future = self._client.publish(
                self._client.topic_path(self._project, topic), data, **(attributes or {})
            )
            return str(future.result(timeout=timeout))
        except (google_errors.GoogleAPIError, TimeoutError) as exc:
            raise RetryableError(publish_failure(self._project, topic, exc)) from exc
