"""Crash anywhere: after a side effect and before the write, after the write and before the publish, lost events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from events.steps import StepType
from shared.phases import Phase
from shared.steps.sweep import needs_emit, sweep
from shared.store import Change
from tests import fakes
from tests.fakes import Pipeline, World, decision_trail, drop_first, fail_commit_once

GRACE = 30.0


def promoted_v1(**settings: Any) -> tuple[World, Pipeline]:
    """A world where v1 is already the stable revision."""
    world = World.create(lost_event_grace_seconds=GRACE, **settings)
    world.register()
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()
    world.clock.advance(30)
    return world, pipeline


def reference_trail() -> list[tuple[str, str, str, str, int]]:
    """The decision trail of an undisturbed v2 rollout."""
    world, pipeline = promoted_v1()
    world.push(pipeline, "v2")
    pipeline.run()
    return decision_trail(world.store.decisions(world.rollouts()[0].id))


def writes_phase(phase: Phase, **fields: object) -> Callable[[Change], bool]:
    """A commit predicate: the change moves a rollout into `phase` (with the given field values)."""

    def predicate(change: Change) -> bool:
        return any(
            r.phase is phase and all(getattr(r, k) == v for k, v in fields.items())
            for r, _ in change.rollouts
        )

    return predicate


@pytest.mark.parametrize(
    ("phase", "fields", "side_effect"),
    [
        (Phase.WAITING_READY, {}, "deploy"),  # revision created, traffic pinned
        (Phase.SHIFTING, {"traffic_percent": 50, "step_applied": True}, "set_traffic"),
        (Phase.PROMOTED, {}, "set_traffic"),
    ],
)
def test_crash_after_kube_patch_before_the_write_converges(
    phase: Phase, fields: dict[str, object], side_effect: str
) -> None:
    """The store fails once right after the cluster was changed; redelivery ends in the clean state."""
    world, pipeline = promoted_v1()
    crash = RuntimeError("instance crashed before the Firestore write")
    effects_before: list[int] = []

    def predicate(change: Change) -> bool:
        hit = writes_phase(phase, **fields)(change)
        if hit:
            effects_before.append(len(world.serving.calls_of(side_effect)))
        return hit

    aborted = fail_commit_once(world.store, predicate, crash)
    world.push(pipeline, "v2")
    pipeline.run()

    assert len(aborted) == 1 and effects_before and effects_before[0] > 0  # the cluster had moved
    assert pipeline.errors() == [crash]  # nacked once, then redelivered
    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED
    assert decision_trail(world.store.decisions(v2.id)) == reference_trail()
    assert world.traffic() == {world.revision("v2"): 100}
    assert len([r for r in world.serving.revisions if r[1] == world.revision("v2")]) == 1
    assert not world.serving.missing_revision_writes


def test_crash_after_the_write_before_the_publish_is_picked_up_by_the_sweep() -> None:
    """The step's write landed but its next event was never sent: the tick re-emits it after the grace."""
    world, pipeline = promoted_v1()
    world.push(pipeline, "v2")
    pipeline.deliver_next()  # ingest: publishes the deploy event
    world.publisher.fail_next(ConnectionError("publish lost with the instance"))
    deploy_delivery = pipeline.deliver_next()
    assert isinstance(deploy_delivery.error, ConnectionError)
    assert world.rollouts()[0].phase is Phase.WAITING_READY  # the write had landed
    crashed_at = world.clock.now()

    pipeline.run(until=lambda: any(p.source == "tick" for p in world.publisher.sent))
    waited = (world.clock.now() - crashed_at).total_seconds()
    assert GRACE <= waited <= GRACE + pipeline.tick_seconds
    re_emitted = [p.event for p in world.publisher.sent if p.source == "tick"]
    assert [(e.type, e.phase) for e in re_emitted] == [(StepType.WAIT_READY, "WAITING_READY")]

    pipeline.run()
    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED
    assert [t[:2] for t in decision_trail(world.store.decisions(v2.id))] == [
        t[:2] for t in reference_trail()
    ]


@pytest.mark.parametrize(
    "lost",
    [StepType.DEPLOY, StepType.WAIT_READY, StepType.VALIDATE, StepType.SHIFT, StepType.PROMOTE],
)
def test_a_lost_next_step_event_is_re_emitted_by_the_sweep(lost: StepType) -> None:
    """Pub/Sub loses one event; nothing happens until the grace passes, then the rollout completes."""
    world, _ = promoted_v1()
    pipeline = world.pipeline(drop=drop_first(lost))
    world.push(pipeline, "v2")
    pipeline.drain()
    stuck = world.rollouts()[0]
    assert pipeline.dropped and stuck.active and stuck.phase.step is lost
    stuck_at = world.clock.now()

    pipeline.run(
        until=lambda: (
            world.rollouts()[0].phase is not stuck.phase or world.rollouts()[0].seq != stuck.seq
        )
    )
    assert (world.clock.now() - stuck_at).total_seconds() >= GRACE
    pipeline.run()
    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED
    assert [t[:2] for t in decision_trail(world.store.decisions(v2.id))] == [
        t[:2] for t in reference_trail()
    ]


def test_sweep_emits_a_due_step_once_until_the_grace_passes() -> None:
    """Due and never emitted: emit; emitted since due: wait for the grace; not due or ended: never."""
    world, _ = promoted_v1()
    now = world.clock.now()
    base = world.rollouts()[0].evolve(phase=Phase.SHIFTING, due_at=now, emitted_at=None)
    cutoff = now - timedelta(seconds=GRACE)
    assert needs_emit(base, cutoff, now)
    assert needs_emit(base.evolve(emitted_at=now - timedelta(seconds=1)), cutoff, now)
    assert not needs_emit(base.evolve(emitted_at=now), cutoff, now)
    assert needs_emit(base.evolve(due_at=cutoff - timedelta(1), emitted_at=cutoff), cutoff, now)
    assert not needs_emit(base.evolve(due_at=now + timedelta(seconds=1)), cutoff, now)
    assert not needs_emit(base.evolve(due_at=None), cutoff, now)
    assert not needs_emit(base.evolve(phase=Phase.PROMOTED), cutoff, now)


def test_bake_waits_are_re_emitted_by_the_tick_exactly_once_each() -> None:
    """With a bake time, each step's end is published by one tick, not by every tick after it."""
    world, pipeline = promoted_v1()
    world.register(bake_seconds=10)
    world.push(pipeline, "v2")
    pipeline.run()
    from_ticks = [p.event for p in world.publisher.sent if p.source == "tick"]
    assert [(e.type, e.step_index) for e in from_ticks] == [
        (StepType.SHIFT, 0),
        (StepType.SHIFT, 1),
        (StepType.SHIFT, 2),
    ]
    assert world.rollouts()[0].phase is Phase.PROMOTED


@pytest.mark.parametrize("step", [StepType.VALIDATE, StepType.SHIFT])
def test_a_step_slower_than_the_lost_event_grace_still_commits(
    step: StepType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that always takes 3 graces (a large golden set, a slow metrics backend) while the
    tick runs beside it: the tick re-emits it, yet its result is committed and the copy dropped
    (dropping its own work as stale would let each copy meet the same fate, forever)."""
    expected = [t[:2] for t in reference_trail()]  # before the step is made slow
    world, pipeline = promoted_v1()
    runs: list[int] = []
    act = fakes.STEP_ACTS[step]

    def slow(ctx: Any) -> Any:
        runs.append(ctx.rollout.seq)
        for _ in range(int(3 * GRACE)):  # every run of this step is this slow
            world.clock.advance(1)
            sweep(world.deps, cause="tick")  # the scheduler's tick, in parallel
        return act(ctx)

    monkeypatch.setitem(fakes.STEP_ACTS, step, slow)
    world.push(pipeline, "v2")
    pipeline.run(max_ticks=100)

    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED, f"{v2.phase} after {len(runs)} runs of {step.value}"
    assert [t[:2] for t in decision_trail(world.store.decisions(v2.id))] == expected
    re_emitted = [p.event.type for p in world.publisher.sent if p.source == "tick"]
    assert step in re_emitted  # the tick did re-emit the slow step meanwhile
    # Each of its runs committed: none was thrown away for the tick's mark.
    assert len(runs) == len(set(runs))
