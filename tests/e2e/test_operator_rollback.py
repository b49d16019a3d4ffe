"""`hekaton rollback` during a rollout: traffic returns to the previous stable at once, the rollout ends."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.specs import e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack, traffic_pairs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris-rollback"
REPOSITORY = e2e_repository("rollback")
NAMESPACE = "e2e"
# Long enough that only the operator can end the first step within the test.
BAKE_SECONDS = 30
REASON = "e2e: operator pulls v2 back"


def test_operator_rollback_at_10_percent_returns_traffic_to_the_stable(
    e2e_stack: E2EStack,
) -> None:
    stack = e2e_stack
    stack.register(e2e_spec(SERVICE, REPOSITORY, bake_seconds=BAKE_SECONDS))
    v1 = stack.push(f"{REPOSITORY}:v1")  # a first deploy has no steps, so no bake either
    assert stack.follow(SERVICE, v1.rollout_id(SERVICE))["phase"] == "PROMOTED"
    v2 = stack.push(f"{REPOSITORY}:v2")
    v1_revision, v2_revision = v1.revision(SERVICE), v2.revision(SERVICE)

    def baking_at_10_percent() -> list[dict[str, Any]] | None:
        active = stack.status(SERVICE)["active_rollout"]
        if not active or active["phase"] != "SHIFTING" or active["traffic_percent"] != 10:
            return None
        traffic = stack.cluster_traffic(SERVICE, NAMESPACE)
        return traffic if (v2_revision, 10) in traffic_pairs(traffic) else None

    wait_until(baking_at_10_percent, timeout=30, what=f"{v2_revision} to take 10% of traffic")
    requested_at = time.monotonic()
    done = stack.cli("rollback", SERVICE, "--reason", REASON)
    assert done.returncode == 0, done.stderr

    ended = stack.follow(SERVICE, v2.rollout_id(SERVICE), timeout=20)
    assert time.monotonic() - requested_at < BAKE_SECONDS, "the rollback waited for the bake"
    assert ended["phase"] == "ROLLED_BACK"
    assert REASON in ended["reason"]
    last = ended["decisions"][-1]
    assert last["outcome"] == "rollback_requested"
    assert last["values"]["traffic_percent_before"] == 10
    assert last["values"]["target_revision"] == v1_revision
    assert last["message_id"]

    assert traffic_pairs(stack.cluster_traffic(SERVICE, NAMESPACE)) == [(v1_revision, 100)]
    status = stack.status(SERVICE)
    assert status["stable_revision"] == v1_revision
    assert status["active_rollout"] is None
    response = stack.gateway_predict(f"{SERVICE}.{NAMESPACE}.example.com", [[5.1, 3.5, 1.4, 0.2]])
    assert response.json()["model_version"] == "v1"
