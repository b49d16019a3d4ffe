"""Every transition published once as a CloudEvent on hekaton-events, with ids a redelivery repeats."""

from __future__ import annotations

from typing import Any

from events.transitions import TRANSITION_TYPE, TransitionEvent, parse_transition, transition_id
from shared.commands import CommandRequest
from shared.phases import Phase
from shared.steps.command_acts import rollout_acts
from shared.steps.commands import run_command
from tests.fakes import World, digest_of
from tests.unit.test_rules_crash import GRACE, promoted_v1


def notified(world: World, rollout_id: str) -> list[TransitionEvent]:
    """The notifications sent for one rollout, in order."""
    return [e for e in world.publisher.transitions if e.rollout_id == rollout_id]


def logged_ids(world: World, rollout_id: str) -> list[str]:
    """The event ids the rollout's decision log calls for."""
    return [transition_id(rollout_id, d.seq) for d in world.store.decisions(rollout_id)]


def test_every_decision_of_a_rollout_is_one_event_with_a_deterministic_id() -> None:
    """Birth to PROMOTED: one event per log entry, same order, the entry's fields and the rollout's."""
    world, pipeline = promoted_v1()
    world.push(pipeline, "v2")
    pipeline.run()
    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED
    events = notified(world, v2.id)
    decisions = world.store.decisions(v2.id)
    assert [e.id for e in events] == logged_ids(world, v2.id)
    assert events[0].phase_from == "" and events[0].seq == 1  # the birth
    for event, decision in zip(events, decisions, strict=True):
        assert (event.phase_from, event.phase_to, event.outcome, event.reason) == (
            decision.phase_from,
            decision.phase_to,
            decision.outcome,
            decision.reason,
        )
        assert event.at == decision.at.isoformat()
        assert event.service == "iris" and event.revision == v2.revision
        assert event.image == v2.image_ref
    assert events[-1].phase_to == "PROMOTED" and events[-1].traffic_percent == 100
    envelope = events[-1].envelope()
    assert envelope["type"] == TRANSITION_TYPE
    assert envelope["subject"] == f"rollouts/{v2.id}"
    assert envelope["id"] == f"{v2.id}-{events[-1].seq:04d}"


def test_redelivered_steps_publish_the_same_ids() -> None:
    """Every message delivered twice: each republished notification repeats an id and its content."""
    world = World.create(lost_event_grace_seconds=GRACE)
    world.register()
    pipeline = world.pipeline(duplicate=True)
    world.push(pipeline, "v1")
    pipeline.run()
    world.push(pipeline, "v2")
    pipeline.run()
    for rollout in world.rollouts():
        events = notified(world, rollout.id)
        assert sorted({e.id for e in events}) == logged_ids(world, rollout.id)
        by_id: dict[str, TransitionEvent] = {}
        for event in events:
            assert by_id.setdefault(event.id, event) == event


def test_a_superseded_rollout_and_an_operator_command_are_notified() -> None:
    """The entry a birth writes for the rollout it supersedes, and an abort's, are events too."""
    world, pipeline = promoted_v1()
    world.register(bake_seconds=300)
    world.push(pipeline, "v2")
    pipeline.run(until=lambda: world.rollouts()[0].phase is Phase.SHIFTING)
    v2 = world.only_rollout(digest_of("v2"))
    world.push(pipeline, "v3")
    pipeline.run(until=lambda: len(world.rollouts()) == 3)  # ingest of v3 supersedes v2
    assert notified(world, v2.id)[-1].phase_to == "SUPERSEDED"
    v3 = world.only_rollout(digest_of("v3"))
    assert v3.active
    request = CommandRequest(
        command="abort", principal="ann@example.com", key="abort-1", origin="api", service="iris"
    )
    run_command(world.deps, request, rollout_acts())
    last = notified(world, v3.id)[-1]
    assert (last.phase_to, last.source) == ("ROLLED_BACK", "control")
    assert "ann@example.com" in last.reason
    for rollout in (v2, v3):
        assert [e.id for e in notified(world, rollout.id)] == logged_ids(world, rollout.id)


def test_a_crash_between_the_commit_and_the_publish_is_caught_up_by_the_sweep(
    monkeypatch: Any,
) -> None:
    """The deploy step's write landed, then the instance died before its notification and next step
    went out: the tick re-emits the step after the grace and re-publishes the entry (same id)."""
    world, pipeline = promoted_v1()
    world.push(pipeline, "v2")
    pipeline.deliver_next()  # ingest
    real = world.publisher.publish_transition
    lost: list[str] = []

    def crash_once(event: TransitionEvent) -> str:
        if not lost and event.phase_to == "WAITING_READY":
            lost.append(event.id)
            raise ConnectionError("instance died")
        return real(event)

    monkeypatch.setattr(world.publisher, "publish_transition", crash_once)
    world.publisher.fail_next(ConnectionError("instance died"))  # the next step's publish too
    assert isinstance(pipeline.deliver_next().error, ConnectionError)
    pipeline.run()
    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED
    events = notified(world, v2.id)
    assert lost and lost[0] in [e.id for e in events]
    assert [e.source for e in events if e.id == lost[0]] == ["tick"]
    assert sorted({e.id for e in events}) == logged_ids(world, v2.id)


def test_a_failing_event_topic_never_fails_or_delays_a_rollout(monkeypatch: Any) -> None:
    """hekaton-events refusing every publish: the rollout goes through as if nothing happened."""
    world, pipeline = promoted_v1()

    def refuse(event: TransitionEvent) -> str:
        raise ConnectionError("topic unavailable")

    monkeypatch.setattr(world.publisher, "publish_transition", refuse)
    started = world.clock.now()
    world.push(pipeline, "v2")
    pipeline.run()
    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED
    assert (v2.ended_at - started).total_seconds() < GRACE  # type: ignore[operator]


def test_the_event_round_trips_and_bounds_its_figures() -> None:
    """Serialised and parsed back unchanged; a huge values dict becomes a bounded excerpt."""
    from events.transitions import MAX_FIGURE_CHARS, MAX_FIGURES, figures_excerpt

    figures = figures_excerpt({f"v{i:02d}": "x" * 500 for i in range(30)}, {"max_error_rate": 0.01})
    assert len(figures) == MAX_FIGURES + 1 and figures["truncated"] == 31 - MAX_FIGURES
    assert all(len(str(v)) <= MAX_FIGURE_CHARS for v in figures.values())
    event = TransitionEvent(
        service="iris",
        rollout_id="iris-abc",
        seq=3,
        phase_from="VALIDATING",
        phase_to="SHIFTING",
        outcome="validated",
        reason="smoke and golden set passed",
        at="2026-03-01T12:00:00+00:00",
        figures=figures,
        source="validate",
    )
    assert parse_transition(event.to_json()) == event
