"""Every CloudEvent function of the manifest, fuzzed through functions-framework's own Flask app onto
the fakes: each input ends handled or recorded-and-acknowledged (bounded), never a 5xx or a retry."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, seed

from functions.manifest import FUNCTIONS, FunctionDef
from shared.ignoring import MAX_EXCERPT, MAX_ID, MAX_REASON
from tests import fuzz_targets
from tests.fuzz_inputs import HUGE, Delivery, dumps
from tests.fuzz_targets import HANDLED, MAX_RECORD_BYTES, RECORDED, UNHANDLED

SHARE = fuzz_targets.share(30)


def test_every_function_of_the_manifest_is_a_fuzz_target() -> None:
    """A new function cannot skip the fuzzer: event functions here, HTTP ones in test_fuzz_http.py."""
    names = {f.name for f in fuzz_targets.event_functions()}
    assert names == {f.name for f in FUNCTIONS if not f.http}
    _, ctx = fuzz_targets.fuzz_world()
    for fn in fuzz_targets.event_functions():
        assert fuzz_targets.deliveries_for(fn, ctx) is not None


@pytest.mark.parametrize("fn", fuzz_targets.event_functions(), ids=lambda f: f.name)
def test_generated_deliveries_end_handled_or_recorded(fn: FunctionDef) -> None:
    """A seeded share of bench/fuzz.py's inputs; the bench runs 10,000 per function."""
    world, ctx = fuzz_targets.fuzz_world()
    seen: set[str] = set()

    @seed(7)
    @SHARE
    @given(fuzz_targets.deliveries_for(fn, ctx))
    def check(delivery: Delivery) -> None:
        result = fuzz_targets.deliver(world, fn.name, delivery)
        assert result.outcome != UNHANDLED, (result.status, result.detail)
        for record in result.records:
            assert len(record.reason) <= MAX_REASON and len(record.excerpt) <= MAX_EXCERPT
            assert len(record.message_id) <= MAX_ID
            assert fuzz_targets.record_size(record) <= MAX_RECORD_BYTES
            assert len(record.id.encode()) <= 1500 and "/" not in record.id
        seen.add(result.outcome)

    check()
    assert RECORDED in seen, "no input was recorded: the generator lost its broken inputs"


def push(topic: str, body: bytes, message_id: str = "m-1") -> Delivery:
    """A raw Pub/Sub push of `body`."""
    envelope = {
        "message": {"data": base64.b64encode(body).decode(), "messageId": message_id},
        "subscription": "projects/p/subscriptions/s",
    }
    return Delivery(
        "push", f"/projects/p/topics/{topic}", {"Content-Type": "application/json"}, dumps(envelope)
    )


def test_a_valid_registry_push_is_acted_on() -> None:
    """The fuzzer's 'handled' is real: a valid push through the same path starts a rollout."""
    world, ctx = fuzz_targets.fuzz_world()
    body = json.dumps(
        {
            "action": "INSERT",
            "digest": f"{ctx.repository}@sha256:{'b' * 64}",
            "tag": f"{ctx.repository}:v3",
        }
    ).encode()
    result = fuzz_targets.deliver(world, "ingest", push("gcr", body, "m-new"))
    assert result.outcome == HANDLED, result.detail
    assert any(r.digest == f"sha256:{'b' * 64}" for r in world.rollouts())


@pytest.mark.parametrize(
    "body",
    [b"[" * 10_000 + b"]" * 10_000, b"1" + b"0" * 5000, b'{"action": "\\udc80"}'],
    ids=["deep", "10**5000", "surrogate"],
)
def test_bodies_python_cannot_decode_are_recorded_not_500(body: bytes) -> None:
    """These raised out of ingest (a 500, so Pub/Sub redelivered them until the dead letter)."""
    world, _ = fuzz_targets.fuzz_world()
    result = fuzz_targets.deliver(world, "ingest", push("gcr", body))
    assert result.outcome == RECORDED, (result.status, result.detail)
    assert "not JSON" in result.records[0].reason or "not valid Unicode" in result.records[0].reason


def test_a_huge_source_attribute_is_not_stored_whole() -> None:
    """The topic on the record came unbounded from the CloudEvent source; now Pub/Sub's rule bounds it."""
    world, _ = fuzz_targets.fuzz_world()
    delivery = Delivery(
        "structured",
        "/",
        {"Content-Type": "application/cloudevents+json"},
        dumps(
            {
                "specversion": "1.0",
                "type": fuzz_targets.inputs.PUBSUB_TYPE,
                "source": "//pubsub.googleapis.com/projects/p/topics/" + HUGE,
                "id": "ce-1",
                "data": {"message": {"data": "e30=", "messageId": "m-1"}},
            }
        ),
    )
    result = fuzz_targets.deliver(world, "ingest", delivery)
    assert result.outcome == RECORDED
    assert result.recorded_bytes < 4000
