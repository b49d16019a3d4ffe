"""At-least-once delivery through the real path: duplicated and reordered pushes change nothing.

Two services with the same spec follow two repositories with the same models. `iris-dup` gets every
message of its rollouts twice, the second copy POSTed to the function's push endpoint as soon as
the message is published (so the copies race), and again, newest first, after the rollouts ended.
`iris-clean` gets nothing extra. Both must end with the same decision log (up to names, digests,
times and measured latencies) and `iris-dup`'s records must not move after the late copies.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from events.steps import REGISTRY_TOPIC, STEP_TOPICS, StepType
from tests.e2e.specs import e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack, Pushed, traffic_pairs
from tests.e2e.taps import Captured, TopicTap

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

DUP, CLEAN = "iris-dup", "iris-clean"
DUP_REPO, CLEAN_REPO = e2e_repository("dup"), e2e_repository("clean")
NAMESPACE = "e2e"
TAPPED_TOPICS = [REGISTRY_TOPIC, *STEP_TOPICS.values()]


def _concerns_dup(captured: Captured) -> bool:
    """Whether a tapped message belongs to `iris-dup`'s rollouts (its pushes or its step events)."""
    try:
        body = json.loads(captured.data)
    except ValueError:
        return False
    if captured.topic == REGISTRY_TOPIC:
        return str(body.get("digest", "")).startswith(f"{DUP_REPO}@")
    return bool(body.get("data", {}).get("service") == DUP)


class Duplicator:
    """Delivers each tapped `iris-dup` message once more, straight to its function's push endpoint."""

    def __init__(self, stack: E2EStack) -> None:
        self.stack = stack
        self.lock = threading.Lock()
        self.statuses: list[tuple[str, str, int]] = []  # (topic, message id, HTTP status)

    def deliver(self, captured: Captured) -> None:
        """POST the message's push envelope; remember what the function answered."""
        function = self.stack.function_name(captured.topic)
        envelope = captured.push_envelope(self.stack.project, function)
        status = self.stack.post_envelope(captured.topic, envelope).status_code
        with self.lock:
            self.statuses.append((captured.topic, captured.message_id, status))

    def deliver_if_dup(self, captured: Captured) -> None:
        """Tap callback: duplicate only `iris-dup`'s messages."""
        if _concerns_dup(captured):
            self.deliver(captured)


def _logged_retryable(stack: E2EStack, topic: str, message_id: str) -> bool:
    """Whether the function behind `topic` logged `message_id` as a retryable failure."""
    component = f"fn-{stack.function_name(topic)}"
    for line in stack.log_text(component).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # tracebacks and start-up banners
        if (
            isinstance(entry, dict)
            and entry.get("message_id") == message_id
            and str(entry.get("message", "")).startswith("retryable failure")
        ):
            return True
    return False


_VARYING_KEYS = frozenset(
    {"at", "message_id", "latency_ms", "started_at", "updated_at", "ended_at"}
    # the validation's warm-up deadline and the golden replay's duration are wall-clock figures
    | {"warmup_deadline", "retry_at", "seconds", "previous_warm_until"}
)


def _without_measurements(value: Any) -> Any:
    """Drop times, message ids and measured latencies: they differ between any two runs."""
    if isinstance(value, dict):
        return {k: _without_measurements(v) for k, v in value.items() if k not in _VARYING_KEYS}
    if isinstance(value, list):
        return [_without_measurements(v) for v in value]
    return value


def _normalised(
    history: list[dict[str, Any]], service: str, repository: str, pushes: dict[str, Pushed]
) -> str:
    """The history as text with the service's own names and digests replaced by placeholders."""
    text = json.dumps(_without_measurements(history), sort_keys=True)
    text = text.replace(repository, "<repository>")
    for tag, pushed in pushes.items():
        # Rollout ids carry a hash of the push's message id: the only part that differs per push.
        text = text.replace(pushed.rollout_id(service), f"<rollout {tag}>")
        hex_digest = pushed.digest.removeprefix("sha256:")
        text = text.replace(hex_digest, f"<{tag}>").replace(hex_digest[:12], f"<{tag}>")
    return text.replace(service, "<service>")


def test_duplicated_and_reordered_deliveries_end_like_a_clean_run(e2e_stack: E2EStack) -> None:
    stack = e2e_stack
    for name, repository in ((DUP, DUP_REPO), (CLEAN, CLEAN_REPO)):
        stack.register(e2e_spec(name, repository, steps=[10, 50, 100]))
    duplicator = Duplicator(stack)
    pushes: dict[str, dict[str, Pushed]] = {DUP: {}, CLEAN: {}}
    with TopicTap(stack, TAPPED_TOPICS, on_message=duplicator.deliver_if_dup) as tap:
        for tag in ("v1", "v2"):
            pushes[DUP][tag] = stack.push(f"{DUP_REPO}:{tag}")
            pushes[CLEAN][tag] = stack.push(f"{CLEAN_REPO}:{tag}")
            for service in (DUP, CLEAN):
                ended = stack.follow(service, pushes[service][tag].rollout_id(service))
                assert ended["phase"] == "PROMOTED", (service, tag, ended["reason"])
        # The last message of iris-dup's last rollout must have reached the tap (and its copy).
        last_rollout = pushes[DUP]["v2"].rollout_id(DUP)
        tap.wait_for(
            lambda m: m.topic == STEP_TOPICS[StepType.PROMOTE] and last_rollout.encode() in m.data,
            timeout=10,
            what=f"the promote event of {last_rollout} on the tap",
        )
    # Leaving the tap waited for the copies still being delivered.
    assert not tap.errors, tap.errors
    during_run = list(duplicator.statuses)
    dup_messages = [m for m in tap.messages if _concerns_dup(m)]

    # Every kind of message was duplicated while the rollouts ran. A copy racing its original may
    # lose on contention (two deploys creating the Knative Service at once): that one is refused
    # as retryable (500, so Pub/Sub redelivers it) and says so in the function's log.
    assert {topic for topic, _, _ in during_run} == set(TAPPED_TOPICS), during_run
    for topic, message_id, status in during_run:
        assert status in (200, 500), (topic, message_id, status)
        if status == 500:
            assert _logged_retryable(stack, topic, message_id), (topic, message_id)

    # Late copies of everything, newest first: stragglers of finished rollouts change nothing.
    before = stack.history(DUP)
    generation = stack.ksvc(DUP, NAMESPACE)["metadata"]["generation"]
    late = Duplicator(stack)
    for captured in reversed(dup_messages):
        late.deliver(captured)
    assert all(status == 200 for _, _, status in late.statuses), late.statuses
    assert stack.history(DUP) == before
    assert stack.ksvc(DUP, NAMESPACE)["metadata"]["generation"] == generation

    # No double rollout and no repeated log entry: the same record a clean run leaves.
    assert [r["id"] for r in before] == [pushes[DUP][tag].rollout_id(DUP) for tag in ("v2", "v1")]
    for rollout in before:
        ids = [d["id"] for d in rollout["decisions"]]
        assert len(ids) == len(set(ids)), ids
    assert _normalised(before, DUP, DUP_REPO, pushes[DUP]) == _normalised(
        stack.history(CLEAN), CLEAN, CLEAN_REPO, pushes[CLEAN]
    )
    v2_revision = pushes[DUP]["v2"].revision(DUP)
    assert traffic_pairs(stack.cluster_traffic(DUP, NAMESPACE)) == [(v2_revision, 100)]
    # A duplicate is not bad input, but a step event that no longer applies is kept as ignored with
    # its reason: one record per function and message id, however many copies arrived.
    duplicated_ids = {m.message_id for m in dup_messages}
    recorded = [e for e in stack.ignored() if e["message_id"] in duplicated_ids]
    assert recorded, "no duplicate step event was recorded as ignored"
    for entry in recorded:
        assert entry["reason"].startswith("stale or duplicate step event"), entry
    keys = [(e["function"], e["message_id"]) for e in recorded]
    assert len(keys) == len(set(keys)), keys
