"""Wire the Pub/Sub emulator as Eventarc wires GCP: one push subscription per trigger topic, with dead-lettering."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress

from events.steps import DEAD_LETTER_TOPIC
from functions.manifest import DEAD_LETTER_INBOX, DELIVERY, FUNCTIONS, topics

# After this many failed pushes a message goes to the dead-letter topic instead of looping forever
# (the same number deploy.sh sets in GCP; only the backoff is shorter locally, so tests stay fast).
MAX_DELIVERY_ATTEMPTS = DELIVERY.max_delivery_attempts
LOCAL_MAX_BACKOFF_SECONDS = 10


@contextmanager
def _emulator_env(pubsub_host: str) -> Iterator[None]:
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


def subscription_name(function: str) -> str:
    """The push subscription feeding one function (Eventarc names them after the trigger)."""
    return f"hekaton-{function}-push"


def wire(
    pubsub_host: str,
    project: str,
    endpoints: Mapping[str, str],
    *,
    min_backoff_seconds: float = 1.0,
    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS,
) -> list[str]:
    """Create every topic and a push subscription per event function; idempotent. Returns created names."""
    from google.api_core import exceptions as google_errors
    from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]
    from google.protobuf import duration_pb2

    created: list[str] = []
    with _emulator_env(pubsub_host):
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        try:
            for topic in topics():
                try:
                    publisher.create_topic(name=publisher.topic_path(project, topic))
                    created.append(topic)
                except google_errors.AlreadyExists:
                    pass
            dead_letter = publisher.topic_path(project, DEAD_LETTER_TOPIC)
            # A pull inbox beside the recorder: dead letters stay readable with gcloud even without it.
            with suppress(google_errors.AlreadyExists):
                subscriber.create_subscription(
                    name=subscriber.subscription_path(project, DEAD_LETTER_INBOX),
                    topic=dead_letter,
                )
            for function in FUNCTIONS:
                if function.trigger_topic is None or function.name not in endpoints:
                    continue
                base = endpoints[function.name].rstrip("/")
                topic_path = publisher.topic_path(project, function.trigger_topic)
                request = {
                    "name": subscriber.subscription_path(project, subscription_name(function.name)),
                    "topic": topic_path,
                    # functions-framework reads the topic from this path, as it appears in production.
                    "push_config": {"push_endpoint": f"{base}/{topic_path}"},
                    "ack_deadline_seconds": 60,
                    "retry_policy": {
                        "minimum_backoff": duration_pb2.Duration(
                            nanos=int(min_backoff_seconds * 1e9) % 10**9,
                            seconds=int(min_backoff_seconds),
                        ),
                        "maximum_backoff": duration_pb2.Duration(seconds=LOCAL_MAX_BACKOFF_SECONDS),
                    },
                }
                if function.dead_letters:  # the recorder's own letters retry, never loop back
                    request["dead_letter_policy"] = {
                        "dead_letter_topic": dead_letter,
                        "max_delivery_attempts": max_delivery_attempts,
                    }
                try:
                    subscriber.create_subscription(request=request)
                    created.append(request["name"])
                except google_errors.AlreadyExists:
                    pass
        finally:
            subscriber.close()
    return created
