"""Event parsers beyond the golden files: the Pub/Sub envelope limits, image references, operator commands."""

from __future__ import annotations

import base64

import pytest

from events.artifact_registry import ImageReference, split_image
from events.errors import MalformedEvent
from events.operator import RollbackRequest, parse_rollback_request
from events.pubsub import MAX_MESSAGE_BYTES, parse_message, topic_from_source
from events.steps import STEP_TOPICS, StepType

DIGEST = "sha256:" + "ab" * 32


def envelope(data: bytes | str, **message: object) -> dict[str, object]:
    """Eventarc-shaped CloudEvent data around raw bytes (or an already encoded string)."""
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    return {"message": {"data": encoded, "messageId": "m-1", **message}, "subscription": "s"}


def test_message_fields_are_decoded() -> None:
    """Data is base64-decoded; attributes become strings; the topic comes from the CloudEvent source."""
    message = parse_message(
        envelope(b'{"a":1}', attributes={"n": 3}, publishTime="2026-01-01T00:00:00Z"),
        source="//pubsub.googleapis.com/projects/p/topics/hekaton-deploy",
    )
    assert (message.data, message.attributes, message.topic) == (
        b'{"a":1}',
        {"n": "3"},
        "hekaton-deploy",
    )
    assert message.publish_time == "2026-01-01T00:00:00Z"


def test_message_id_falls_back_to_the_cloudevent_id() -> None:
    """functions-framework may leave messageId out; the CloudEvent id is the same message id."""
    data = {"message": {"data": ""}}
    assert parse_message(data, event_id="ce-7").message_id == "ce-7"
    with pytest.raises(MalformedEvent, match="no messageId"):
        parse_message(data)


def test_huge_payload_is_refused_before_decoding() -> None:
    """A message over 1 MiB is malformed, with its size in the reason."""
    huge = "A" * (MAX_MESSAGE_BYTES * 4 // 3 + 8)
    with pytest.raises(MalformedEvent, match=r"too large \(\d+ base64 characters; limit 1048576"):
        parse_message(envelope(huge))
    # Just under the limit still decodes.
    assert (
        len(parse_message(envelope(b"x" * (MAX_MESSAGE_BYTES - 3))).data) == MAX_MESSAGE_BYTES - 3
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("not a dict", "missing object 'message'"),
        ({"message": {"data": 5, "messageId": "m"}}, "'data' is not a base64 string"),
        (
            {"message": {"data": "", "messageId": "m", "attributes": ["a"]}},
            "'attributes' is not an object",
        ),
        ({"message": {"data": "%%%", "messageId": "m"}}, "not valid base64"),
    ],
)
def test_malformed_envelopes_name_the_problem(data: object, reason: str) -> None:
    """Each malformed envelope fails with a reason naming the offending field."""
    with pytest.raises(MalformedEvent, match=reason):
        parse_message(data)


def test_excerpt_is_short_and_printable() -> None:
    """Ignore records keep only an excerpt, never the whole body."""
    message = parse_message(envelope(b"\xff" + b"x" * 500))
    excerpt = message.excerpt(limit=20)
    assert excerpt.endswith("…") and len(excerpt) == 21 and excerpt.startswith("\ufffd")


@pytest.mark.parametrize(
    ("source", "topic"),
    [
        ("//pubsub.googleapis.com/projects/p/topics/gcr", "gcr"),
        ("//pubsub.googleapis.com/projects/p/topics/", None),
        ("//hekaton.dev/functions/tick", None),
        (None, None),
    ],
)
def test_topic_from_source(source: str | None, topic: str | None) -> None:
    """Only a Pub/Sub topic source names a topic."""
    assert topic_from_source(source) == topic


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("r.io/a/b", ImageReference("r.io/a/b")),
        ("r.io/a/b:v1", ImageReference("r.io/a/b", tag="v1")),
        (f"r.io/a/b@{DIGEST}", ImageReference("r.io/a/b", digest=DIGEST)),
        (f"r.io/a/b:v1@{DIGEST}", ImageReference("r.io/a/b", DIGEST, "v1")),
        (f"localhost:5000/a:v1@{DIGEST}", ImageReference("localhost:5000/a", DIGEST, "v1")),
    ],
)
def test_split_image(text: str, expected: ImageReference) -> None:
    """A registry port is not a tag; tag and digest are both optional."""
    assert split_image(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "non-empty string"),
        ("r.io/a/b:-bad", "invalid tag"),
        ("r.io/a/b@sha256:ABC", "invalid digest"),
        ("nohost", "invalid repository"),
    ],
)
def test_split_image_rejects(text: str, reason: str) -> None:
    """Bad references fail with a reason naming the part."""
    with pytest.raises(MalformedEvent, match=reason):
        split_image(text)


def test_image_reference_views() -> None:
    """`by_digest` is what gets deployed; it refuses a reference without a digest."""
    ref = ImageReference("r.io/a/b", DIGEST, "v1")
    assert ref.by_digest == f"r.io/a/b@{DIGEST}"
    assert ref.display == f"r.io/a/b:v1@{DIGEST}"
    with pytest.raises(ValueError, match="no digest"):
        _ = ImageReference("r.io/a/b", tag="v1").by_digest


def test_rollback_request() -> None:
    """Operator rollback requests: service required, optional strings checked."""
    assert parse_rollback_request(b'{"service": "iris"}') == RollbackRequest("iris")
    assert parse_rollback_request(
        b'{"service": "iris", "revision": "iris-1", "reason": "pager", "requested_by": "ann"}'
    ) == RollbackRequest("iris", "iris-1", "pager", "ann")
    for body, reason in [
        (b"{", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"service": ""}', "non-empty string 'service'"),
        (b'{"service": "iris", "revision": 3}', "'revision' must be a string"),
    ]:
        with pytest.raises(MalformedEvent, match=reason):
            parse_rollback_request(body)


def test_every_step_has_its_own_topic() -> None:
    """Each step type maps to one topic, and no two share one."""
    assert set(STEP_TOPICS) == set(StepType)
    assert len(set(STEP_TOPICS.values())) == len(StepType)
    assert all(step.topic == STEP_TOPICS[step] for step in StepType)
