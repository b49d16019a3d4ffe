"""Every parser in events/ under pathological input: it returns a value or raises MalformedEvent, nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import jsontext
from events.artifact_registry import parse_notification, split_image
from events.errors import MalformedEvent
from events.operator import parse_rollback_request
from events.pubsub import parse_message, topic_from_source
from events.steps import StepType, parse_step_event
from events.transitions import parse_transition
from tests import fuzz_inputs as inputs

CTX = inputs.Context("registry.local/models/iris", "iris", "iris-aaaaaaaa-123456", "deploying")
PARSERS: dict[str, Callable[[bytes], Any]] = {
    "registry": parse_notification,
    "rollback": parse_rollback_request,
    "transition": parse_transition,
    **{
        f"step-{step.name.lower()}": (lambda body, s=step: parse_step_event(body, expected=s))
        for step in StepType
    },
}
BODIES = {
    "registry": inputs.registry_bodies(CTX),
    "rollback": inputs.rollback_bodies(CTX),
    "transition": inputs.transition_bodies(CTX),
    **{f"step-{s.name.lower()}": inputs.step_bodies(CTX, s) for s in StepType},
}
PATHOLOGICAL = [t.encode() for t in inputs.RAW_JSON] + list(inputs.BAD_BODIES)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def parses_or_refuses(parser: Callable[[bytes], Any], body: bytes) -> None:
    """The one allowed failure is MalformedEvent, and its reason is bounded."""
    try:
        parser(body)
    except MalformedEvent as exc:
        assert 0 < len(exc.reason) <= 2000, exc.reason[:200]


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize("body", PATHOLOGICAL, ids=lambda b: repr(b[:12]))
def test_pathological_bodies_are_refused_as_malformed(name: str, body: bytes) -> None:
    """Deep nesting, 1e400, 10**5000, NaN, invalid UTF-8, MBs: refused, never another exception."""
    with pytest.raises(MalformedEvent) as caught:
        PARSERS[name](body)
    assert len(caught.value.reason) <= 2000


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_generated_bodies_parse_or_are_refused(name: str) -> None:
    """Hypothesis: every field of every event kind nulled, retyped, stretched or dropped."""

    @FAST
    @given(BODIES[name])
    def check(body: bytes) -> None:
        parses_or_refuses(PARSERS[name], body)

    check()


def test_deep_nesting_and_huge_integers_name_the_problem() -> None:
    """The reasons say what is wrong (not a RecursionError or int-digits ValueError)."""
    with pytest.raises(MalformedEvent, match="nested too deeply"):
        jsontext.loads("[" * 10_000 + "]" * 10_000, "step event")
    with pytest.raises(MalformedEvent, match="step event is not JSON: Exceeds the limit"):
        jsontext.loads("1" + "0" * 5000, "step event")
    with pytest.raises(MalformedEvent, match="NaN is not a JSON number"):
        jsontext.loads("NaN", "step event")


def test_a_lone_surrogate_in_a_string_is_refused() -> None:
    """JSON escapes can carry one; neither Firestore nor UTF-8 logs can: refused at the door."""
    with pytest.raises(MalformedEvent, match="not valid Unicode"):
        parse_rollback_request(b'{"service": "iris", "reason": "\\udc80"}')


@pytest.mark.parametrize(
    "rollout_id", ["a/b", "..", "__x__", "rollouts/x/decisions/y", "a\x00b", "x" * 101, "\udc80"]
)
def test_step_event_ids_that_would_name_another_document_are_refused(rollout_id: str) -> None:
    """A rollout id is used as a Firestore document id: path characters never reach the store."""
    body = inputs.dumps(
        {
            "specversion": "1.0",
            "type": StepType.DEPLOY.value,
            "data": {
                "rollout_id": rollout_id,
                "service": "iris",
                "phase": "deploying",
                "step_index": 0,
                "cause": "m",
            },
        }
    )
    with pytest.raises(MalformedEvent, match=r"rollout_id|not valid Unicode"):
        parse_step_event(body, expected=StepType.DEPLOY)


@pytest.mark.parametrize("service", ["a/b", "..", "__x__", "IRIS", "x" * 41])
def test_rollback_requests_name_a_service_or_are_refused(service: str) -> None:
    """The service becomes a Firestore id and a Knative name: only DNS-1035 labels get through."""
    with pytest.raises(MalformedEvent, match="is not a service name"):
        parse_rollback_request(inputs.dumps({"service": service}))


@given(st.one_of(inputs.odd_values(raw=False), st.dictionaries(st.text(), inputs.odd_values())))
@FAST
def test_pubsub_envelopes_parse_or_are_refused(data: Any) -> None:
    """Any CloudEvent data: a PubSubMessage with a bounded, valid id, or MalformedEvent."""
    try:
        message = parse_message(data, event_id="ce-1", source="//pubsub.googleapis.com/x")
    except MalformedEvent:
        return
    assert len(message.message_id) <= 500 and jsontext.encodable(message.message_id)


@pytest.mark.parametrize("message_id", ["\udc80", "x" * 501])
def test_pubsub_message_ids_pubsub_never_gives_are_refused(message_id: str) -> None:
    """Message ids feed record ids and hashes: invalid Unicode or huge ones are refused."""
    with pytest.raises(MalformedEvent, match="not an id Pub/Sub gives"):
        parse_message({"message": {"data": "", "messageId": message_id}})


def test_a_topic_is_only_what_pubsub_would_name_one() -> None:
    """The topic kept on an ignore record comes from the source attribute: bounded by Pub/Sub's rule."""
    assert topic_from_source("//pubsub.googleapis.com/projects/p/topics/gcr") == "gcr"
    assert topic_from_source("//x/topics/" + "x" * 3_000_000) is None
    assert topic_from_source("//x/topics/../../etc") is None


@given(st.text(max_size=200))
@FAST
def test_split_image_returns_parts_or_refuses(reference: str) -> None:
    """Image references: parsed into parts or MalformedEvent."""
    with contextlib.suppress(MalformedEvent):
        split_image(reference)
