"""One active rollout per service: a push 100 ms after another supersedes it, traffic ends on the newer."""

from __future__ import annotations

import time

import pytest

from tests.e2e.specs import e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack, traffic_pairs

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris-race"
REPOSITORY = e2e_repository("race")
NAMESPACE = "e2e"
GAP_SECONDS = 0.1


def test_the_older_of_two_pushes_100ms_apart_ends_superseded(e2e_stack: E2EStack) -> None:
    stack = e2e_stack
    stack.register(e2e_spec(SERVICE, REPOSITORY))
    v1 = stack.push(f"{REPOSITORY}:v1")
    assert stack.follow(SERVICE, v1.rollout_id(SERVICE))["phase"] == "PROMOTED"

    older = stack.push(f"{REPOSITORY}:v2")  # returns once Pub/Sub has the message
    # The scenario's input, not a wait for a result: the second push goes out 100 ms after the
    # first was published (the outcome checked below holds for any gap and either delivery order).
    time.sleep(GAP_SECONDS)
    newer = stack.push(f"{REPOSITORY}:v3")

    superseded = stack.follow(SERVICE, older.rollout_id(SERVICE))
    promoted = stack.follow(SERVICE, newer.rollout_id(SERVICE))
    assert superseded["phase"] == "SUPERSEDED"
    assert newer.rollout_id(SERVICE) in superseded["reason"]
    # Caused by the newer push (delivered second) or by its own (delivered after the newer one).
    ending = superseded["decisions"][-1]
    assert ending["phase_to"] == "SUPERSEDED"
    assert ending["message_id"] in (newer.message_id, older.message_id)
    assert promoted["phase"] == "PROMOTED", promoted["reason"]

    old_revision, new_revision = older.revision(SERVICE), newer.revision(SERVICE)
    traffic = stack.cluster_traffic(SERVICE, NAMESPACE)
    assert old_revision not in [entry["revision"] for entry in traffic], traffic
    assert traffic_pairs(traffic) == [(new_revision, 100)]
    status = stack.status(SERVICE)
    assert status["stable_revision"] == new_revision
    assert status["active_rollout"] is None
    # And users get the newer model.
    response = stack.gateway_predict(f"{SERVICE}.{NAMESPACE}.example.com", [[5.1, 3.5, 1.4, 0.2]])
    assert response.json()["model_version"] == "v3"
