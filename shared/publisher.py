"""Publishing the next step: a Protocol, and the Pub/Sub implementation tuned for latency."""

from __future__ import annotations

from typing import Protocol

from events import trace
from events.steps import StepEvent
from events.transitions import EVENTS_TOPIC, TRANSITION_TYPE, TransitionEvent
from shared import metering


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
        """Publish bytes to a topic of this project and wait for the ack."""
        metering.count(metering.MESSAGES_PUBLISHED)
        future = self._client.publish(
            self._client.topic_path(self._project, topic), data, **(attributes or {})
        )
        return str(future.result(timeout=timeout))
