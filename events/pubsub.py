"""Parse the Pub/Sub message that Eventarc (or functions-framework's push conversion) wraps in a CloudEvent."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from events.errors import MalformedEvent
from events.jsontext import encodable

PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"

# Pub/Sub itself caps messages at 10 MB; nothing hekaton consumes is anywhere near 1 MiB, and a
# bigger payload is either an accident or abuse, so it is refused before decoding.
MAX_MESSAGE_BYTES = 1 << 20
MAX_MESSAGE_ID = 500  # characters; Pub/Sub's own ids are short decimal strings
# Set on a replayed dead letter: when the original was published. What orders pushes (a replay
# of an old push must not count as the newest one).
ORIGINAL_PUBLISH_TIME = "hekaton-original-publish-time"
# A dead letter's id, as shared/dead_letters.py makes them: "dl-" and the dead-lettered message's
# id when it is safe in a path and a document id, else a digest of it. One rule for the store, the
# API's paths and the CLI.
DEAD_LETTER_ID = re.compile(r"dl-[0-9A-Za-z][0-9A-Za-z_-]{0,99}")
# Pub/Sub's rule for topic ids: 3-255 characters, starting with a letter.
_TOPIC = re.compile(r"[A-Za-z][-A-Za-z0-9._~%+]{2,254}")


@dataclass(frozen=True)
class PubSubMessage:
    """One Pub/Sub message, decoded from a `messagePublished` CloudEvent."""

    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    publish_time: str | None = None
    topic: str | None = None

    @property
    def first_published(self) -> str | None:
        """When the message was first published: a replay's original time, else its own."""
        return self.attributes.get(ORIGINAL_PUBLISH_TIME) or self.publish_time

    def excerpt(self, limit: int = 200) -> str:
        """A short, printable excerpt of the payload for ignore records (never the whole body)."""
        text = self.data[:limit].decode("utf-8", errors="replace")
        return text + ("…" if len(self.data) > limit else "")


def topic_from_source(source: str | None) -> str | None:
    """`//pubsub.googleapis.com/projects/P/topics/T` -> `T` (None when the source names no topic)."""
    if not source or "/topics/" not in source:
        return None
    topic = source.rsplit("/topics/", 1)[1]
    return topic if _TOPIC.fullmatch(topic) else None


def parse_message(
    data: Any, *, event_id: str | None = None, source: str | None = None
) -> PubSubMessage:
    """Decode the CloudEvent data `{"message": {...}, "subscription": ...}` into a PubSubMessage."""
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise MalformedEvent("CloudEvent data is not a Pub/Sub envelope: missing object 'message'")
    message = data["message"]
    message_id = message.get("messageId") or message.get("message_id") or event_id
    if not message_id or not isinstance(message_id, str):
        raise MalformedEvent("Pub/Sub message has no messageId")
    if len(message_id) > MAX_MESSAGE_ID or not encodable(message_id):
        raise MalformedEvent(
            f"Pub/Sub messageId {message_id[:40]!a} is not an id Pub/Sub gives"
            f" (valid Unicode, at most {MAX_MESSAGE_ID} characters)"
        )
    publish_time = message.get("publishTime") or message.get("publish_time")
    if publish_time is not None and not isinstance(publish_time, str):
        raise MalformedEvent("Pub/Sub message 'publishTime' is not a string")
    raw = message.get("data", "")
    if not isinstance(raw, str):
        raise MalformedEvent("Pub/Sub message 'data' is not a base64 string")
    if len(raw) > MAX_MESSAGE_BYTES * 4 // 3 + 4:
        raise MalformedEvent(
            f"Pub/Sub message is too large ({len(raw)} base64 characters; limit {MAX_MESSAGE_BYTES} bytes)"
        )
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedEvent(f"Pub/Sub message 'data' is not valid base64: {exc}") from exc
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise MalformedEvent("Pub/Sub message 'attributes' is not an object")
    return PubSubMessage(
        message_id=message_id,
        data=decoded,
        attributes={str(k): str(v) for k, v in attributes.items()},
        publish_time=publish_time,
        topic=topic_from_source(source),
    )
