"""Every transition arrives on `hekaton-events` and at the webhook, end to end on the local stack; a
webhook that hangs or fails never delays a rollout; the webhook's secret URL is never logged."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from events.transitions import EVENTS_TOPIC, TransitionEvent, parse_transition, transition_id
from tests.e2e.specs import e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack, wait_until
from tests.e2e.taps import Captured, TopicTap
from tests.e2e.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris-events"
REPOSITORY = e2e_repository("events")
# How long the sink may take to post what the topic carries (three 2 s attempts at worst).
DELIVERY_TIMEOUT = 30.0


def spec(name: str) -> dict[str, Any]:
    """The iris spec without the golden set (these tests are about what a rollout tells)."""
    document = e2e_spec(name, REPOSITORY)
    document["validation"].pop("golden", None)
    return document


def events_of(tap: TopicTap, rollout_id: str) -> list[tuple[Captured, TransitionEvent]]:
    """The transition events of one rollout the tap saw, in the order they were published."""
    found = [(m, parse_transition(m.data)) for m in tap.messages if m.topic == EVENTS_TOPIC]
    mine = [(m, e) for m, e in found if e.rollout_id == rollout_id]
    return sorted(mine, key=lambda pair: (pair[0].publish_time, pair[1].seq))


def duration_seconds(rollout: dict[str, Any]) -> float:
    """From the rollout's start to its end, as hekaton recorded them."""
    started = datetime.fromisoformat(rollout["started_at"])
    return (datetime.fromisoformat(rollout["ended_at"]) - started).total_seconds()


def test_every_transition_arrives_once_on_hekaton_events_and_at_the_webhook(
    e2e_stack: E2EStack, webhook: WebhookReceiver
) -> None:
    stack = e2e_stack
    webhook.set_mode("answer")
    stack.register(spec(SERVICE))
    with TopicTap(stack, [EVENTS_TOPIC]) as tap:
        v1 = stack.push(f"{REPOSITORY}:v1")
        assert stack.follow(SERVICE, v1.rollout_id(SERVICE))["phase"] == "PROMOTED"
        v2 = stack.push(f"{REPOSITORY}:v2")
        rid = v2.rollout_id(SERVICE)
        rollout = stack.follow(SERVICE, rid)
        assert rollout["phase"] == "PROMOTED", rollout["reason"]
        decisions = rollout["decisions"]
        expected_ids = [transition_id(rid, d["seq"]) for d in decisions]
        wait_until(
            lambda: len(events_of(tap, rid)) >= len(decisions) or None,
            timeout=DELIVERY_TIMEOUT,
            what=f"{len(decisions)} transition events of {rid} on {EVENTS_TOPIC}",
        )
        # Everything a late duplicate could need to arrive has: the rollout ended, then its last
        # event was seen, and the tap is closed after the webhook got its posts below.
        wait_until(
            lambda: len(webhook.posts(f"rollout {rid} #")) >= len(decisions) or None,
            timeout=DELIVERY_TIMEOUT,
            what=f"{len(decisions)} webhook posts for {rid}",
        )
    events = [event for _message, event in events_of(tap, rid)]
    assert tap.errors == []
    # Exactly one event per recorded transition, published in the log's order, with its phases.
    assert [e.id for e in events] == expected_ids
    assert [(e.seq, e.phase_from, e.phase_to, e.outcome) for e in events] == [
        (d["seq"], d["phase_from"], d["phase_to"], d["outcome"]) for d in decisions
    ]
    assert [e.message_id for e in events] == [d["message_id"] for d in decisions]
    assert events[-1].phase_to == "PROMOTED" and events[-1].traffic_percent == 100
    assert {e.revision for e in events} == {v2.revision(SERVICE)}
    # The webhook: one Slack-style message per transition, each naming it.
    posts = webhook.posts(f"rollout {rid} #")
    assert [p.status for p in posts] == [200] * len(decisions)
    assert sorted(p.text.split(" #", 1)[1].split(" ", 1)[0] for p in posts) == sorted(
        str(d["seq"]) for d in decisions
    )
    assert any("→ PROMOTED" in p.text and "traffic 100%" in p.text for p in posts)


@pytest.mark.parametrize("mode", ["hang", "fail"])
def test_a_webhook_that_hangs_or_fails_never_delays_a_rollout(
    e2e_stack: E2EStack, webhook: WebhookReceiver, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rollout is promoted while the webhook has answered none of its posts (hang) or refused
    them all (fail); the sink records each failure (without the URL) and acknowledges."""
    stack = e2e_stack
    name, repository = f"{SERVICE}-{mode}", e2e_repository(f"events-{mode}")
    document = spec(name)
    document["image"] = repository
    stack.register(document)
    webhook.set_mode("answer")
    v1 = stack.push(f"{repository}:v1")
    assert stack.follow(name, v1.rollout_id(name))["phase"] == "PROMOTED"
    v2 = stack.push(f"{repository}:v2")
    baseline = stack.follow(name, v2.rollout_id(name))  # the same kind of rollout, webhook fine
    assert baseline["phase"] == "PROMOTED"

    webhook.set_mode(mode)  # type: ignore[arg-type]
    try:
        v3 = stack.push(f"{repository}:v3")
        rid = v3.rollout_id(name)
        rollout = stack.follow(name, rid)
        assert rollout["phase"] == "PROMOTED", rollout["reason"]
        reached = webhook.posts(f"rollout {rid} #")
        assert reached, "the sink never posted to the webhook while the rollout ran"
        # Promoted while no post of this rollout had been answered with a 2xx.
        assert all(p.mode == mode and p.status in (None, 500) for p in reached), reached
        recorded = wait_until(
            lambda: [
                i for i in stack.ignored() if i["function"] == "notify" and rid in i["reason"]
            ],
            timeout=DELIVERY_TIMEOUT,
            what="the sink's record of a webhook that did not take a post",
        )
        assert ("timed out" if mode == "hang" else "refused with HTTP 500") in recorded[0]["reason"]
        assert webhook.secret not in str(recorded)
    finally:
        webhook.set_mode("answer")
    with capsys.disabled():
        print(
            f"\n{name} v2 → v3 (no bake): {duration_seconds(rollout):.2f}s with the webhook "
            f"{mode}ing; v1 → v2 with it answering: {duration_seconds(baseline):.2f}s"
        )


def test_the_webhook_url_is_never_logged_or_recorded(
    e2e_stack: E2EStack, webhook: WebhookReceiver
) -> None:
    """Whatever ran before (posts, failures, hangs): no log, stack.json or ignored record holds the
    URL; the sink's log names the webhook by host and hash instead."""
    stack = e2e_stack
    notify_log = stack.log_text("fn-notify")
    assert "posting transition events to webhook 127.0.0.1 (sha256:" in notify_log
    leaked = [
        name
        for name, component in stack.state.components.items()
        if component.log and webhook.secret in Path(component.log).read_text(errors="replace")
    ]
    assert leaked == []
    assert webhook.secret not in (stack.state.state_dir / "stack.json").read_text()
    assert webhook.secret not in str(stack.ignored())
