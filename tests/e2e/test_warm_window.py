"""The warm window on the local stack: after a promotion the previous stable revision stays in the
Knative traffic block at 0 % with tag `previous` (and min-scale 1), answers at its tag URL, takes a
rollback at once, and is released by the tick when the window ends."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.specs import E2E_NAMESPACE, e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack, traffic_pairs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris-warm"
REPOSITORY = e2e_repository("warm")
HOST = f"{SERVICE}.{E2E_NAMESPACE}.example.com"
INSTANCES = [[5.1, 3.5, 1.4, 0.2]]


def spec(window: int) -> dict[str, Any]:
    """iris, keeping the previous revision warm for `window` seconds."""
    document = e2e_spec(SERVICE, REPOSITORY, scaling={"keep_previous_warm_seconds": window})
    document["validation"].pop("golden", None)
    return document


def tagged(stack: E2EStack) -> list[tuple[str, int, str | None]]:
    """The Knative Service's `status.traffic` as (revision, percent, tag)."""
    return [
        (t["revision"], t["percent"], t["tag"])
        for t in stack.cluster_traffic(SERVICE, E2E_NAMESPACE)
    ]


def model_version(stack: E2EStack, host: str) -> str | None:
    """Which model answers at `host` through the gateway (None: no answer)."""
    try:
        response = stack.gateway_predict(host, INSTANCES)
    except httpx.HTTPError:
        return None
    return response.json().get("model_version") if response.status_code == 200 else None


def promote(stack: E2EStack, tag: str) -> str:
    """Push `tag`, follow it to PROMOTED; its revision."""
    pushed = stack.push(f"{REPOSITORY}:{tag}")
    rollout = stack.follow(SERVICE, pushed.rollout_id(SERVICE))
    assert rollout["phase"] == "PROMOTED", rollout["reason"]
    return pushed.revision(SERVICE)


def test_the_previous_revision_stays_warm_then_a_rollback_is_instant_then_it_is_released(
    e2e_stack: E2EStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = e2e_stack
    stack.register(spec(window=300))
    v1 = promote(stack, "v1")
    v2 = promote(stack, "v2")

    # Routed at 0 % with its tag, carrying the min-scale that keeps Knative from scaling it to zero.
    assert tagged(stack) == [(v2, 100, "stable"), (v1, 0, "previous")]
    revision = stack.get_revision(v1, E2E_NAMESPACE)
    assert revision["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
    assert model_version(stack, f"previous-{HOST}") == "v1"  # Ready and answering, not cold
    assert model_version(stack, HOST) == "v2"
    status = stack.status(SERVICE)
    assert status["previous_revision"] == v1 and status["previous_warm_until"]

    requested = time.monotonic()
    done = stack.cli("rollback", SERVICE, "--reason", "e2e: back to the warm v1")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: model_version(stack, HOST) == "v1", timeout=10, what="v1 answering")
    rollback_seconds = time.monotonic() - requested
    assert tagged(stack) == [(v1, 100, "stable")]
    assert stack.status(SERVICE)["previous_revision"] is None

    # A short window this time: the tick releases the previous revision when it ends.
    stack.register(spec(window=3))
    v3 = promote(stack, "v3")
    assert tagged(stack) == [(v3, 100, "stable"), (v1, 0, "previous")]
    promoted_at = time.monotonic()
    wait_until(
        lambda: tagged(stack) == [(v3, 100, "stable")],
        timeout=30,
        what=f"the tick releasing {v1} after its 3 s window",
    )
    released_after = time.monotonic() - promoted_at
    status = stack.status(SERVICE)
    assert (status["previous_revision"], status["previous_warm_until"]) == (None, None)
    assert traffic_pairs(stack.cluster_traffic(SERVICE, E2E_NAMESPACE)) == [(v3, 100)]
    assert model_version(stack, HOST) == "v3"
    with capsys.disabled():
        print(
            f"\n{SERVICE}: rollback to the warm previous revision answered in "
            f"{rollback_seconds:.2f}s (CLI to the gateway serving v1); a 3 s window was released "
            f"{released_after:.2f}s after the promotion was seen"
        )
