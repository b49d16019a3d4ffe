"""The local Pub/Sub wiring takes its delivery settings from the manifest deploy.sh uses."""

from __future__ import annotations

import uuid

from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

from functions import manifest
from local.pubsub_wiring import subscription_name, wire


def test_every_trigger_dead_letters_after_the_manifest_attempts(pubsub_env: str) -> None:
    project = f"wiring-{uuid.uuid4().hex[:8]}"
    event_functions = [f for f in manifest.FUNCTIONS if not f.http]
    endpoints = {f.name: "http://127.0.0.1:9" for f in event_functions}
    created = wire(pubsub_env, project, endpoints)
    assert set(manifest.topics()) <= set(created)
    assert wire(pubsub_env, project, endpoints) == []  # idempotent
    subscriber = pubsub_v1.SubscriberClient()
    try:
        dead_letter = f"projects/{project}/topics/{manifest.DEAD_LETTER_TOPIC}"
        inbox = subscriber.get_subscription(
            subscription=subscriber.subscription_path(project, manifest.DEAD_LETTER_INBOX)
        )
        assert inbox.topic == dead_letter
        for function in event_functions:
            found = subscriber.get_subscription(
                subscription=subscriber.subscription_path(project, subscription_name(function.name))
            )
            assert found.topic == f"projects/{project}/topics/{function.trigger_topic}"
            policy = found.dead_letter_policy
            if not function.dead_letters:  # the recorder's letters retry, never loop back
                assert policy.dead_letter_topic == ""
                continue
            assert policy.dead_letter_topic == dead_letter
            assert policy.max_delivery_attempts == manifest.DELIVERY.max_delivery_attempts
    finally:
        subscriber.close()
