"""Bad input through the real topics is recorded with its reason, acknowledged once, and harms nothing."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx
import pytest

from cli.rollout_commands import registry_message
from events.steps import DEAD_LETTER_TOPIC, REGISTRY_TOPIC, ROLLBACK_TOPIC, STEP_TOPICS, StepType
from tests.conftest import LOCAL_CALL_TIMEOUT
from tests.e2e.specs import e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack, wait_until
from tests.e2e.taps import TopicTap

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris-bad"
REPOSITORY = e2e_repository("bad-input")
# Pub/Sub retries a refused push after the subscription's minimum backoff (1 s locally): a message
# handled once and not again within this window was acknowledged.
REDELIVERY_WINDOW_SECONDS = 2.5


@dataclass(frozen=True)
class BadMessage:
    """One bad message: where it goes, what it is, and what /ignored must say about it."""

    name: str
    topic: str
    data: bytes
    function: str
    reason_contains: str
    keyed_by_service: bool = False  # ingest records tag-filter misses per service

    def ignored_key(self, message_id: str) -> str:
        """The message id /ignored lists this message under."""
        return f"{message_id}-{SERVICE}" if self.keyed_by_service else message_id


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


def _bad_messages() -> list[BadMessage]:
    valid_but_huge = {
        **registry_message(f"{REPOSITORY}:v2"),
        "padding": "x" * (2 * 1024 * 1024),
    }
    unknown_type = {
        "specversion": "1.0",
        "type": "dev.hekaton.rollout.explode.v1",
        "source": "//e2e/tests",
        "id": "e2e-unknown-type",
        "data": {"rollout_id": "nope", "service": SERVICE, "phase": "DEPLOYING", "step_index": 0},
    }
    return [
        BadMessage("undecodable", REGISTRY_TOPIC, b"\xff\xfe{not json", "ingest", "is not JSON"),
        BadMessage(
            "unknown repository",
            REGISTRY_TOPIC,
            _json(registry_message("us-docker.pkg.dev/demo/nobody-follows/iris:v1")),
            "ingest",
            "no registered service follows repository us-docker.pkg.dev/demo/nobody-follows/iris",
        ),
        BadMessage(
            "tag outside the filter",
            REGISTRY_TOPIC,
            _json(registry_message(f"{REPOSITORY}:latest")),
            "ingest",
            f"tag 'latest' does not match {SERVICE}'s tag filter",
            keyed_by_service=True,
        ),
        BadMessage(
            "DELETE",
            REGISTRY_TOPIC,
            _json(registry_message(f"{REPOSITORY}:v1", delete=True)),
            "ingest",
            "DELETE of",
        ),
        BadMessage("2 MB payload", REGISTRY_TOPIC, _json(valid_but_huge), "ingest", "too large"),
        BadMessage(
            "unknown CloudEvent type",
            STEP_TOPICS[StepType.DEPLOY],
            _json(unknown_type),
            "deploy",
            "unknown CloudEvent type 'dev.hekaton.rollout.explode.v1'",
        ),
        BadMessage(
            "garbage rollback", ROLLBACK_TOPIC, b"roll it all back!!", "rollback", "is not JSON"
        ),
    ]


def _handled_count(stack: E2EStack, function: str, message_id: str) -> int:
    """How many times the function logged handling `message_id` (one JSON line per delivery)."""
    count = 0
    for line in stack.log_text(f"fn-{function}").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # start-up banner, tracebacks
        if isinstance(entry, dict) and entry.get("message_id") == message_id:
            count += 1
    return count


def test_bad_input_is_recorded_acknowledged_and_harmless(e2e_stack: E2EStack) -> None:
    stack = e2e_stack
    stack.register(e2e_spec(SERVICE, REPOSITORY))
    bad = _bad_messages()
    with TopicTap(stack, [DEAD_LETTER_TOPIC]) as dead_letters:
        sent = {message.name: stack.publish(message.topic, message.data) for message in bad}
        expected = {m.ignored_key(sent[m.name]): m for m in bad}

        def all_recorded() -> dict[str, dict[str, str]] | None:
            found = {e["message_id"]: e for e in stack.ignored() if e["message_id"] in expected}
            return found if len(found) == len(expected) else None

        recorded = wait_until(all_recorded, timeout=30, what="every bad message in /ignored")
        recorded_at = time.monotonic()
        for key, message in expected.items():
            entry = recorded[key]
            assert entry["function"] == message.function, (message.name, entry)
            assert entry["topic"] == message.topic, (message.name, entry)
            assert message.reason_contains in entry["reason"], (message.name, entry["reason"])
        huge = recorded[sent["2 MB payload"]]
        assert len(huge["excerpt"]) < 1000, "an ignore record keeps an excerpt, not the payload"
        assert stack.history(SERVICE) == [], "bad input started a rollout"

        # The functions are still alive, and a normal push afterwards still goes all the way.
        assert stack.started.dead_component() is None
        for name, record in stack.state.components.items():
            if name.startswith("fn-") and record.url:
                httpx.get(
                    record.url, timeout=LOCAL_CALL_TIMEOUT
                )  # answers at all: the server is serving
        v1 = stack.push(f"{REPOSITORY}:v1")
        assert stack.follow(SERVICE, v1.rollout_id(SERVICE))["phase"] == "PROMOTED"

        # Each bad message was delivered once and acknowledged: no redelivery within the window
        # in which Pub/Sub would have retried a refused push, so none can reach the dead letters.
        deadline = recorded_at + REDELIVERY_WINDOW_SECONDS
        while True:
            counts = {m.name: _handled_count(stack, m.function, sent[m.name]) for m in bad}
            assert set(counts.values()) == {1}, counts
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        payloads = {m.data for m in bad}
        assert not [c for c in dead_letters.messages if c.data in payloads]
