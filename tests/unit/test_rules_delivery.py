"""At-least-once delivery: a clean run, and the same pushes with every message twice and out of order."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shared.phases import Phase
from shared.steps.engine import StepReport
from tests.fakes import Pipeline, World, decision_trail

FIRST_DEPLOY = [
    ("0001-created", "", "DEPLOYING"),
    ("0002-deployed", "DEPLOYING", "WAITING_READY"),
    ("0003-ready", "WAITING_READY", "VALIDATING"),
    ("0004-first_deploy_validated", "VALIDATING", "PROMOTING"),
    ("0005-promoted", "PROMOTING", "PROMOTED"),
]
STEPPED = [
    ("0001-created", "", "DEPLOYING"),
    ("0002-deployed", "DEPLOYING", "WAITING_READY"),
    ("0003-ready", "WAITING_READY", "VALIDATING"),
    ("0004-validation_passed", "VALIDATING", "SHIFTING"),
    ("0005-step_applied", "SHIFTING", "SHIFTING"),
    ("0006-step_passed", "SHIFTING", "SHIFTING"),
    ("0007-step_applied", "SHIFTING", "SHIFTING"),
    ("0008-step_passed", "SHIFTING", "SHIFTING"),
    ("0009-step_applied", "SHIFTING", "SHIFTING"),
    ("0010-last_step_passed", "SHIFTING", "PROMOTING"),
    ("0011-promoted", "PROMOTING", "PROMOTED"),
]


def v1_then_v2(world: World, pipeline: Pipeline) -> None:
    """Register iris, push v1 (first deploy) and run it out, then v2 and run it out."""
    world.push(pipeline, "v1")
    pipeline.run()
    world.clock.advance(30)
    world.push(pipeline, "v2")
    pipeline.run()


def trails(world: World) -> list[list[tuple[str, str, str, str, int]]]:
    """Every rollout's decision trail, oldest rollout first."""
    return [decision_trail(world.store.decisions(r.id)) for r in reversed(world.rollouts())]


def test_clean_run_first_deploy_then_three_steps() -> None:
    """v1 goes straight to 100 % after validation; v2 walks 10/50/100 and becomes stable."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()

    v1 = world.rollouts()[0]
    assert (v1.phase, v1.traffic_percent, v1.reason) == (
        Phase.PROMOTED,
        100,
        f"{world.revision('v1')} promoted: serves 100% ({v1.image_short})",
    )
    assert [(d.id, d.phase_from, d.phase_to) for d in world.store.decisions(v1.id)] == FIRST_DEPLOY
    assert world.traffic() == {world.revision("v1"): 100}

    world.clock.advance(30)
    world.push(pipeline, "v2")
    pipeline.run()

    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED and v2.stable_revision == world.revision("v1")
    decisions = world.store.decisions(v2.id)
    assert [(d.id, d.phase_from, d.phase_to) for d in decisions] == STEPPED
    assert [d.values["percent"] for d in decisions if d.outcome == "step_applied"] == [10, 50, 100]
    assert {d.message_id for d in decisions} == {"push-v2"}  # every entry names its causing push

    old, new = world.revision("v1"), world.revision("v2")
    weights = [
        {t.revision: t.percent for t in state}
        for state in world.serving.traffic_changes("models", "iris")
    ]
    assert weights == [
        {old: 100},  # v1 deployed as the only revision
        {old: 100},  # ... then re-tagged stable on promotion
        {old: 100, new: 0},
        {old: 90, new: 10},
        {old: 50, new: 50},
        {old: 0, new: 100},
        {new: 100, old: 0},  # promoted: v1 stays routed at 0 % (tag previous), warm for a rollback
    ]
    service = world.store.get_service("iris")
    assert service is not None
    assert (service.value.stable_revision, service.value.stable_digest) == (new, v2.digest)
    assert service.value.active_rollout_id is None
    assert not pipeline.errors() and not world.serving.missing_revision_writes
    step_reports = [d.result for d in pipeline.deliveries if isinstance(d.result, StepReport)]
    assert {r.status for r in step_reports} == {"applied"}


def clean_reference(bake: float, startup: float) -> tuple[World, Pipeline]:
    """The clean run that a messy run must agree with."""
    world = World.create(startup_seconds=startup)
    world.register(bake_seconds=bake)
    pipeline = world.pipeline()
    v1_then_v2(world, pipeline)
    return world, pipeline


def applied(pipeline: Pipeline) -> Counter[tuple[str, str]]:
    """How often each (step type, phase) event was acted on rather than dropped or deferred."""
    return Counter(
        (d.message.topic or "", d.result.phase or "")
        for d in pipeline.deliveries
        if isinstance(d.result, StepReport) and d.result.status == "applied"
    )


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("bake", "startup"), [(0, 0), (5, 3)])
def test_duplicated_and_reordered_delivery_matches_a_clean_run(
    seed: int, bake: float, startup: float
) -> None:
    """Every message twice, delivered in random order: same end state, same log, same traffic changes."""
    clean, clean_pipeline = clean_reference(bake, startup)
    world = World.create(startup_seconds=startup)
    world.register(bake_seconds=bake)
    pipeline = world.pipeline(duplicate=True, rng=random.Random(seed))
    v1_then_v2(world, pipeline)

    assert [r.phase for r in world.rollouts()] == [Phase.PROMOTED, Phase.PROMOTED]
    assert trails(world) == trails(clean)
    # No entry was written twice, and each log's sequence numbers have no gaps.
    assert not [k for k, n in Counter(world.store.decision_writes).items() if n > 1]
    for rollout in world.rollouts():
        assert [d.seq for d in world.store.decisions(rollout.id)] == list(range(1, rollout.seq + 1))
    # Traffic went through the same distinct states, in the same order (re-applies collapse).
    assert world.serving.traffic_changes("models", "iris") == clean.serving.traffic_changes(
        "models", "iris"
    )
    assert world.serving.distinct_traffic_states(
        "models", "iris"
    ) == clean.serving.distinct_traffic_states("models", "iris")
    assert world.traffic() == clean.traffic()
    assert not pipeline.errors() and not world.serving.missing_revision_writes
    # Every message really arrived twice, yet each step acted as often as in the clean run.
    step_deliveries = [d for d in pipeline.deliveries if isinstance(d.result, StepReport)]
    assert len(step_deliveries) == 2 * len(world.publisher.sent)
    assert applied(pipeline) == applied(clean_pipeline)


def test_a_redelivered_push_is_the_same_rollout() -> None:
    """The same registry message delivered again (even after the rollout finished) starts nothing new."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    message = world.push(pipeline, "v1")
    pipeline.run()
    again = pipeline.push(
        "registry.local/models/iris",
        message,
        "v1",
        message_id="push-v1",
        publish_time=world.clock.now(),
    )
    pipeline.run()
    assert again.message_id == "push-v1"
    assert len(world.rollouts()) == 1
    assert [r.phase for r in world.rollouts()] == [Phase.PROMOTED]
