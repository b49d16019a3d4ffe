"""One active rollout per service: a newer push supersedes the running one; traffic never ends on it."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from shared.phases import Phase
from shared.steps.ingest import handle as ingest
from shared.store import Change
from tests.fakes import REPOSITORY, Pipeline, World, digest_of, registry_message


def setup(*, with_stable: bool, **options: object) -> tuple[World, Pipeline]:
    """iris registered, optionally with v1 already promoted."""
    world = World.create()
    world.register()
    pipeline = world.pipeline(**options)
    if with_stable:
        world.push(pipeline, "v1")
        pipeline.run()
        world.clock.advance(30)
    return world, pipeline


def push_two(world: World, pipeline: Pipeline, *, newer_first: bool) -> None:
    """Queue pushes of v2 and v3 published 100 ms apart, in the chosen delivery order."""
    published = world.clock.now()
    older = registry_message(
        "push-v2",
        digest=f"{REPOSITORY}@{digest_of('v2')}",
        tag=f"{REPOSITORY}:v2",
        publish_time=published,
    )
    newer = registry_message(
        "push-v3",
        digest=f"{REPOSITORY}@{digest_of('v3')}",
        tag=f"{REPOSITORY}:v3",
        publish_time=published + timedelta(milliseconds=100),
    )
    for message in (newer, older) if newer_first else (older, newer):
        pipeline.enqueue(message)


def assert_newer_won(world: World) -> None:
    """v2 SUPERSEDED, v3 PROMOTED and alone in the final traffic; the service points at no rollout."""
    older, newer = world.only_rollout(digest_of("v2")), world.only_rollout(digest_of("v3"))
    assert (older.phase, newer.phase) == (Phase.SUPERSEDED, Phase.PROMOTED)
    assert world.traffic() == {world.revision("v3"): 100}
    service = world.store.get_service("iris")
    assert service is not None
    assert service.value.stable_revision == world.revision("v3")
    assert service.value.active_rollout_id is None
    assert not world.serving.missing_revision_writes


@pytest.mark.parametrize("newer_first", [False, True], ids=["older-first", "newer-first"])
@pytest.mark.parametrize("with_stable", [True, False], ids=["with-stable", "first-deploy"])
def test_two_pushes_100ms_apart(newer_first: bool, with_stable: bool) -> None:
    """Whichever ingest runs first, publish times decide: the older push ends SUPERSEDED."""
    world, pipeline = setup(with_stable=with_stable)
    push_two(world, pipeline, newer_first=newer_first)
    pipeline.run()
    assert_newer_won(world)
    older = world.only_rollout(digest_of("v2"))
    outcomes = [d.outcome for d in world.store.decisions(older.id)]
    if newer_first:
        # Born superseded: it never deployed anything.
        assert outcomes == ["created"] and older.reason and "newer image" in older.reason
        assert world.revision("v2") not in {r[1] for r in world.serving.revisions}
    else:
        assert outcomes == ["created", "superseded"]
        assert older.reason and "superseded by a newer image" in older.reason
    assert not pipeline.errors()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("newer_first", [False, True], ids=["older-first", "newer-first"])
def test_two_pushes_with_duplicates_and_reordering(seed: int, newer_first: bool) -> None:
    """Interleaved with the steps, duplicated and shuffled: the newer still wins, cleanly."""
    world, pipeline = setup(with_stable=True, duplicate=True, rng=random.Random(seed))
    push_two(world, pipeline, newer_first=newer_first)
    pipeline.run()
    assert_newer_won(world)
    assert not pipeline.errors()


def test_newer_push_mid_rollout_takes_over_from_the_stable_revision() -> None:
    """v2 holds 50 % when v3 arrives: v3 starts from v1 (never from v2), and v2 never gets traffic again."""
    world, pipeline = setup(with_stable=True)
    world.push(pipeline, "v2")
    pipeline.run(until=lambda: world.rollouts()[0].traffic_percent == 50)
    assert world.traffic() == {world.revision("v1"): 50, world.revision("v2"): 50}
    writes_before = len(world.serving.traffic_writes)

    world.clock.advance(1)
    world.push(pipeline, "v3")
    pipeline.run()

    assert_newer_won(world)
    assert world.only_rollout(digest_of("v3")).stable_revision == world.revision("v1")
    later_writes = world.serving.traffic_writes[writes_before:]
    assert later_writes
    for write in later_writes:
        assert all(t.percent == 0 for t in write.traffic if t.revision == world.revision("v2"))


def test_a_delayed_older_push_after_the_newer_finished_is_superseded() -> None:
    """The older notification arrives after the newer image was promoted: it must not roll back to it."""
    world, pipeline = setup(with_stable=True)
    published = world.clock.now()
    pipeline.enqueue(
        registry_message(
            "push-v3",
            digest=f"{REPOSITORY}@{digest_of('v3')}",
            tag=f"{REPOSITORY}:v3",
            publish_time=published + timedelta(milliseconds=100),
        )
    )
    pipeline.run()
    world.clock.advance(5)
    pipeline.enqueue(
        registry_message(
            "push-v2",
            digest=f"{REPOSITORY}@{digest_of('v2')}",
            tag=f"{REPOSITORY}:v2",
            publish_time=published,
        )
    )
    pipeline.run()
    assert_newer_won(world)


def test_losing_a_race_to_a_newer_push_reconciles_traffic_without_the_superseded_revision() -> None:
    """v2's shift moves traffic, then finds v3's ingest superseded it: traffic goes back to v1 only."""
    world, pipeline = setup(with_stable=True)
    world.push(pipeline, "v2")
    pipeline.run(until=lambda: world.rollouts()[0].traffic_percent == 10)
    v3_push = registry_message(
        "push-v3",
        digest=f"{REPOSITORY}@{digest_of('v3')}",
        tag=f"{REPOSITORY}:v3",
        publish_time=world.clock.now(),
    )
    raced: list[object] = []

    def ingest_v3_concurrently(change: Change) -> None:
        # v2's 50 % step has just been applied to the cluster and is about to be written.
        if not raced and any(r.traffic_percent == 50 for r, _ in change.rollouts):
            raced.append(ingest(world.deps, v3_push))

    world.store.before_commit.append(ingest_v3_concurrently)
    assert pipeline.drain(until=lambda: bool(raced))  # stops right after v2's racing delivery
    assert world.only_rollout(digest_of("v2")).phase is Phase.SUPERSEDED
    # The loser put traffic back where the winner wants it, naming only revisions that exist.
    assert world.traffic() == {world.revision("v1"): 100}
    assert not world.serving.missing_revision_writes
    pipeline.run()
    assert_newer_won(world)
