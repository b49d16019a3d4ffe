"""Cloud Function `dead-letter` (trigger: topic `hekaton-dead-letter`): keep each dead letter for replay.

Pub/Sub forwards a message here after the subscription's delivery attempts; the record (origin,
attempts, first/last seen, attributes, a bounded excerpt, the payload) is what `hekaton dlq list`
shows and `hekaton dlq replay` republishes. Redeliveries of one dead letter make one record.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from events.pubsub import PubSubMessage
from functions._runtime import handle_pubsub
from functions.manifest import topic_for_subscription
from shared.dead_letters import SOURCE_SUBSCRIPTION, keep, record_from_message
from shared.deps import Deps
from shared.model import DeadLetter


def record(d: Deps, message: PubSubMessage) -> DeadLetter:
    """Keep one dead letter (its original topic derived from the source subscription)."""
    original_topic = topic_for_subscription(message.attributes.get(SOURCE_SUBSCRIPTION))
    return keep(d, record_from_message(message, original_topic=original_topic, now=d.clock.now()))


@functions_framework.cloud_event
def dead_letter(cloud_event: Any) -> None:
    """Record the dead letter; a store failure raises, so Pub/Sub redelivers it."""
    handle_pubsub(cloud_event, "dead-letter", record)
