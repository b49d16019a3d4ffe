"""The notified marker: a crash between a commit and its publish loses no notification."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from events.transitions import TransitionEvent
from shared.phases import Phase
from shared.store import Change
from tests.fakes import Pipeline, World, fail_commit_once
from tests.unit.test_notifications import logged_ids, notified
from tests.unit.test_rules_crash import GRACE, promoted_v1


def lose_publish(
    monkeypatch: Any, world: World, lost: Callable[[TransitionEvent], bool]
) -> list[str]:
    """The instance dies while publishing the first event `lost` picks: it never reaches the topic."""
    real = world.publisher.publish_transition
    ids: list[str] = []

    def publish(event: TransitionEvent) -> str:
        if not ids and lost(event):
            ids.append(event.id)
            raise ConnectionError("instance died between the commit and the publish")
        return real(event)

    monkeypatch.setattr(world.publisher, "publish_transition", publish)
    return ids


def caught_up(world: World, rollout_id: str) -> Callable[[], bool]:
    """The rollout's marker has published everything its log holds."""

    def check() -> bool:
        marker = world.store.get_notified(rollout_id)
        return marker is not None and not marker.value.behind

    return check


def run_past_grace(world: World, pipeline: Pipeline, rollout_id: str) -> float:
    """Tick until the rollout's marker caught up; the seconds that took."""
    started = world.clock.now()
    for _ in range(int(GRACE * 3)):
        if caught_up(world, rollout_id)():
            break
        world.clock.advance(pipeline.tick_seconds)
        pipeline.tick()
    assert caught_up(world, rollout_id)(), "the sweep never caught the marker up"
    return (world.clock.now() - started).total_seconds()


def assert_one_event_per_decision(world: World, rollout_id: str) -> None:
    """Every logged decision was published; a duplicate repeats its id with the same content."""
    events = notified(world, rollout_id)
    assert sorted({e.id for e in events}) == logged_ids(world, rollout_id)
    first: dict[str, TransitionEvent] = {}
    for event in events:
        kept = first.setdefault(event.id, event)
        assert (kept.phase_to, kept.traffic_percent, kept.reason, kept.at) == (
            event.phase_to,
            event.traffic_percent,
            event.reason,
            event.at,
        )


def test_an_undisturbed_rollout_keeps_its_marker_level_with_its_log() -> None:
    """Each step publishes and advances the marker itself: the sweep has nothing to re-publish."""
    world, pipeline = promoted_v1()
    world.push(pipeline, "v2")
    pipeline.run()
    v2 = world.rollouts()[0]
    marker = world.store.get_notified(v2.id)
    assert marker is not None
    assert (marker.value.committed_seq, marker.value.notified_seq) == (v2.seq, v2.seq)
    assert world.store.notifications_behind() == []
    assert [e.id for e in notified(world, v2.id)] == logged_ids(world, v2.id)  # no duplicate
    assert not [e for e in world.publisher.transitions if e.source == "tick"]


def test_a_crash_before_publishing_the_promotion_is_caught_up_after_the_rollout_ended(
    monkeypatch: Any,
) -> None:
    """PROMOTED is committed, then the instance dies: no step follows, yet the tick publishes it."""
    world, pipeline = promoted_v1()
    lost = lose_publish(monkeypatch, world, lambda e: e.phase_to == "PROMOTED")
    world.push(pipeline, "v2")
    pipeline.run()
    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED and lost
    assert lost[0] not in [e.id for e in notified(world, v2.id)]
    marker = world.store.get_notified(v2.id)
    assert marker is not None and marker.value.behind
    assert (marker.value.notified_seq, marker.value.committed_seq) == (v2.seq - 1, v2.seq)

    waited = run_past_grace(world, pipeline, v2.id)

    assert GRACE - pipeline.tick_seconds <= waited <= GRACE + 2 * pipeline.tick_seconds
    caught = [e for e in notified(world, v2.id) if e.id == lost[0]]
    assert [(e.source, e.phase_to, e.traffic_percent) for e in caught] == [
        ("tick", "PROMOTED", 100)
    ]
    assert_one_event_per_decision(world, v2.id)


def test_a_crash_after_the_publish_before_the_marker_moves_republishes_a_duplicate() -> None:
    """The event went out but the marker write died: the sweep publishes it again, same id and
    content, which a consumer drops; then the marker is level."""
    world, pipeline = promoted_v1()
    aborted = fail_commit_once(
        world.store,
        lambda change: any(m.notified_seq == 3 for m, _ in change.notified),
        RuntimeError("instance died before the marker write"),
    )
    world.push(pipeline, "v2")
    pipeline.run()
    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED and len(aborted) == 1
    # The later steps found the gap (seq 3 not recorded) and left the marker to the sweep.
    marker = world.store.get_notified(v2.id)
    assert marker is not None and marker.value.notified_seq == 2

    run_past_grace(world, pipeline, v2.id)

    again = [e for e in world.publisher.transitions if e.source == "tick"]
    assert [e.seq for e in again] == list(range(3, v2.seq + 1))
    assert_one_event_per_decision(world, v2.id)


def test_a_lost_publish_mid_rollout_is_caught_up_in_order(monkeypatch: Any) -> None:
    """The SHIFTING entry's publish is lost while later steps go on: the gap is re-published from
    the marker in log order, and nothing is published a third time."""
    world, pipeline = promoted_v1()
    lost = lose_publish(monkeypatch, world, lambda e: e.phase_to == "SHIFTING")
    world.push(pipeline, "v2")
    pipeline.run()
    v2 = world.rollouts()[0]
    assert lost and v2.phase is Phase.PROMOTED

    run_past_grace(world, pipeline, v2.id)
    sent_after = len(world.publisher.transitions)
    for _ in range(int(GRACE * 2)):  # later ticks find nothing behind
        world.clock.advance(pipeline.tick_seconds)
        pipeline.tick()

    assert len(world.publisher.transitions) == sent_after
    from_tick = [e for e in world.publisher.transitions if e.source == "tick"]
    lost_seq = int(lost[0].rsplit("-", 1)[1])
    assert [e.seq for e in from_tick] == list(range(lost_seq, v2.seq + 1))
    assert_one_event_per_decision(world, v2.id)


def test_the_sweep_leaves_a_fresh_commit_to_the_step_publishing_it() -> None:
    """A marker behind by a commit younger than the grace is not re-published (its step is at it)."""
    world, pipeline = promoted_v1()
    world.push(pipeline, "v2")
    pipeline.deliver_next()  # ingest: born, its entry published
    rollout = world.rollouts()[0]
    # The next step's commit lands and its publish has not happened yet (it is in flight).
    moved = rollout.evolve(seq=rollout.seq + 1)
    decision = replace(world.store.decisions(rollout.id)[-1], id="0002-x", seq=moved.seq)
    loaded = world.store.get_rollout(rollout.id)
    assert loaded is not None
    world.store.commit(
        Change(rollouts=[(moved, loaded.version)], decisions=[(rollout.id, decision)])
    )
    sent = len(world.publisher.transitions)
    pipeline.tick()
    assert len(world.publisher.transitions) == sent
    marker = world.store.get_notified(rollout.id)
    assert marker is not None and marker.value.behind
