"""Golden event conversions: every `<name>.input.json` under tests/golden must parse to its `.expected.json`."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from events.artifact_registry import parse_notification
from events.errors import MalformedEvent
from events.pubsub import PubSubMessage, parse_message
from events.steps import StepEvent, StepType, parse_step_event
from events.transitions import parse_transition

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SOURCE = "//pubsub.googleapis.com/projects/acme-ml/topics/gcr"


def cases(folder: str) -> list[Any]:
    """(input, expected) pairs of one golden folder, one pytest param per pair."""
    found = sorted((GOLDEN / folder).glob("*.input.json"))
    assert found, f"no golden inputs under {folder}"
    params = []
    for path in found:
        name = path.name.removesuffix(".input.json")
        expected = path.with_name(f"{name}.expected.json")
        assert expected.exists(), f"{path.name} has no {expected.name}"
        params.append(
            pytest.param(json.loads(path.read_text()), json.loads(expected.read_text()), id=name)
        )
    return params


def decode(
    data: dict[str, Any], expected: dict[str, Any], *, topic: str = "gcr"
) -> PubSubMessage | None:
    """Decode the envelope, checking the message fields (or the envelope error) against `expected`."""
    if "envelope_error" in expected:
        with pytest.raises(MalformedEvent) as caught:
            parse_message(data, source=SOURCE.replace("/gcr", f"/{topic}"))
        assert caught.value.reason == expected["envelope_error"]
        return None
    message = parse_message(data, source=SOURCE.replace("/gcr", f"/{topic}"))
    assert {
        "message_id": message.message_id,
        "publish_time": message.publish_time,
        "attributes": message.attributes,
    } == expected["message"]
    assert message.topic == topic
    return message


@pytest.mark.parametrize(("data", "expected"), cases("artifact_registry"))
def test_artifact_registry_notification(data: dict[str, Any], expected: dict[str, Any]) -> None:
    """Registry notifications parse to their action and image parts, or fail with the golden reason."""
    message = decode(data, expected)
    if message is None:
        return
    if "error" in expected:
        with pytest.raises(MalformedEvent) as caught:
            parse_notification(message.data)
        assert caught.value.reason == expected["error"]
        return
    event = parse_notification(message.data)
    assert {
        "action": event.action.value,
        "repository": event.image.repository,
        "digest": event.image.digest,
        "tag": event.image.tag,
    } == expected["event"]


@pytest.mark.parametrize(("data", "expected"), cases("step_events"))
def test_step_event(data: dict[str, Any], expected: dict[str, Any]) -> None:
    """Step events parse for the step they are delivered to, or fail with the golden reason."""
    message = decode(data, expected)
    assert message is not None
    step = StepType[expected["deliver_to"]]
    if "error" in expected:
        with pytest.raises(MalformedEvent) as caught:
            parse_step_event(message.data, expected=step)
        assert caught.value.reason == expected["error"]
        return
    event = parse_step_event(message.data, expected=step)
    assert event.as_dict() == expected["event"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [p for p in cases("step_events") if "event" in p.values[1]],
)
def test_step_event_serialises_to_the_golden_body(
    data: dict[str, Any], expected: dict[str, Any]
) -> None:
    """StepEvent.to_json writes exactly the golden structured CloudEvent, and that body parses back."""
    fields = dict(expected["event"])
    event = StepEvent(type=StepType(fields.pop("type")), **fields)
    body = event.to_json(expected["source"])
    assert json.loads(body) == json.loads(base64.b64decode(data["message"]["data"]))
    assert parse_step_event(body, expected=event.type) == event


def test_step_event_round_trip_fills_id_and_time() -> None:
    """An event without id/time gets fresh ones on the wire and otherwise survives unchanged."""
    event = StepEvent(StepType.PROMOTE, "iris-abc-123456", "iris", "PROMOTING", 2, "cause-1")
    parsed = parse_step_event(event.to_json("shift"), expected=StepType.PROMOTE)
    assert len(parsed.id) == 32 and parsed.time.endswith("+00:00")
    assert parsed == StepEvent(
        **{**event.as_dict(), "type": event.type, "id": parsed.id, "time": parsed.time}
    )
    assert json.loads(event.to_json("shift"))["source"] == "//hekaton.dev/functions/shift"


@pytest.mark.parametrize(("data", "expected"), cases("transition_events"))
def test_transition_event(data: dict[str, Any], expected: dict[str, Any]) -> None:
    """hekaton-events messages parse to the golden transition (with its deterministic id), or fail
    with the golden reason."""
    message = decode(data, expected, topic="hekaton-events")
    assert message is not None
    if "error" in expected:
        with pytest.raises(MalformedEvent) as caught:
            parse_transition(message.data)
        assert caught.value.reason == expected["error"]
        return
    event = parse_transition(message.data)
    assert asdict(event) == expected["event"]
    assert event.id == expected["id"]
    # The schema is pinned: serialising the golden event gives exactly the golden body.
    assert event.to_json() == base64.b64decode(data["message"]["data"])
