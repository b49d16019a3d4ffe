"""The tick puts an idle service's route back to what hekaton set, when a late write changed it."""

from __future__ import annotations

from typing import Any

from shared.errors import PermanentError
from shared.phases import Phase
from shared.serving import CANDIDATE_TAG, PREVIOUS_TAG, STABLE_TAG, RevisionHealth, TrafficTarget
from shared.steps.sweep import sweep
from tests.fakes import World, digest_of

WINDOW = 120


def tags_of(world: World) -> list[tuple[str, int, str | None]]:
    """iris's traffic block as (revision, percent, tag)."""
    return [(t.revision, t.percent, t.tag) for t in world.serving.traffic[("models", "iris")]]


def ended(world: World, *tags: str, crashing: tuple[str, ...] = ()) -> None:
    """Push each tag and run it to its end (those in `crashing` fail at readiness)."""
    pipeline = world.pipeline()
    for tag in tags:
        if tag in crashing:
            world.serving.fail_image(digest_of(tag), RevisionHealth(True, False, "ExitCode1"))
        world.push(pipeline, tag)
        pipeline.run()
        assert world.only_rollout(digest_of(tag)).phase.terminal


def late_write(world: World, *targets: tuple[str, int, str]) -> None:
    """A traffic write that was in flight when its step gave up, landing now."""
    world.serving.set_traffic("models", "iris", [TrafficTarget(*t) for t in targets])


def world_with(**settings: Any) -> World:
    world = World.create(**settings)
    world.register(scaling={"keep_previous_warm_seconds": WINDOW})
    return world


def test_a_failed_candidates_tag_landing_late_is_removed_by_the_next_tick() -> None:
    world = world_with()
    ended(world, "v1", "v2", "v3", crashing=("v3",))
    v2, crashed = world.revision("v2"), world.revision("v3")
    assert world.only_rollout(digest_of("v3")).phase is Phase.FAILED
    resting = tags_of(world)
    assert resting == [(v2, 100, STABLE_TAG)]
    late_write(world, (v2, 100, STABLE_TAG), (crashed, 0, CANDIDATE_TAG))

    first = sweep(world.deps, cause="tick-a")
    writes = len(world.serving.traffic_writes)
    second = sweep(world.deps, cause="tick-b")

    assert first.repaired == ["iris"] and tags_of(world) == resting
    assert second.repaired == [] and len(world.serving.traffic_writes) == writes  # nothing to do


def test_a_dropped_warm_previous_entry_is_routed_again_while_its_window_lasts() -> None:
    world = world_with()
    ended(world, "v1", "v2")
    v1, v2 = world.revision("v1"), world.revision("v2")
    late_write(world, (v2, 100, STABLE_TAG))

    assert sweep(world.deps, cause="tick").repaired == ["iris"]
    assert tags_of(world) == [(v2, 100, STABLE_TAG), (v1, 0, PREVIOUS_TAG)]


def test_a_rollout_in_flight_owns_the_route() -> None:
    world = world_with()
    ended(world, "v1")
    world.serving.startup_seconds = 3600.0  # v2 waits for readiness: its rollout stays in flight
    pipeline = world.pipeline()
    world.push(pipeline, "v2")
    pipeline.drain()
    assert world.only_rollout(digest_of("v2")).phase is Phase.WAITING_READY
    before = tags_of(world)

    assert sweep(world.deps, cause="tick").repaired == []
    assert tags_of(world) == before


def test_a_write_between_the_read_and_the_repair_wins() -> None:
    world = world_with()
    ended(world, "v1", "v2", "v3", crashing=("v3",))
    v2, crashed = world.revision("v2"), world.revision("v3")
    late_write(world, (v2, 100, STABLE_TAG), (crashed, 0, CANDIDATE_TAG))
    other = [(v2, 90, STABLE_TAG), (crashed, 10, CANDIDATE_TAG)]
    read = world.serving.get_service

    def read_then_someone_writes(namespace: str, name: str) -> Any:
        view = read(namespace, name)
        late_write(world, *other)  # e.g. a new rollout's step, after our read
        return view

    world.serving.get_service = read_then_someone_writes  # type: ignore[method-assign]
    assert sweep(world.deps, cause="tick").repaired == []
    assert tags_of(world) == other  # not overwritten by a repair computed from an older read


def test_services_unchanged_for_longer_than_the_repair_window_are_not_read() -> None:
    world = world_with(route_repair_seconds=300.0)
    ended(world, "v1", "v2", "v3", crashing=("v3",))
    world.clock.advance(301)
    late_write(world, (world.revision("v2"), 100, STABLE_TAG))
    reads = len(world.serving.calls_of("get_service"))

    assert sweep(world.deps, cause="tick").repaired == []
    assert len(world.serving.calls_of("get_service")) == reads


def test_a_failed_first_deploy_has_nothing_to_repair_to() -> None:
    world = world_with()
    ended(world, "v1", crashing=("v1",))
    before = tags_of(world)
    assert sweep(world.deps, cause="tick").repaired == []
    assert tags_of(world) == before


def test_a_rollout_started_after_the_services_were_listed_keeps_its_route() -> None:
    world = world_with()
    ended(world, "v1", "v2", "v3", crashing=("v3",))
    pipeline = world.pipeline()
    read = world.serving.get_service

    def a_push_lands_first(namespace: str, name: str) -> Any:
        world.push(pipeline, "v4")  # its ingest commits and its deploy writes the route
        v4 = world.revision("v4")
        pipeline.drain(until=lambda: v4 in [revision for revision, _, _ in tags_of(world)])
        return read(namespace, name)

    world.serving.get_service = a_push_lands_first  # type: ignore[method-assign]
    assert sweep(world.deps, cause="tick").repaired == []
    world.serving.get_service = read  # type: ignore[method-assign]
    assert world.revision("v4") in [revision for revision, _, _ in tags_of(world)]


def test_a_route_found_right_is_read_again_only_after_the_recheck_time() -> None:
    world = world_with(route_recheck_seconds=30.0)
    ended(world, "v1", "v2", "v3", crashing=("v3",))
    v2, crashed = world.revision("v2"), world.revision("v3")
    assert sweep(world.deps, cause="tick-a").repaired == []  # found right, remembered
    late_write(world, (v2, 100, STABLE_TAG), (crashed, 0, CANDIDATE_TAG))
    reads = len(world.serving.calls_of("get_service"))

    world.clock.advance(29)
    assert sweep(world.deps, cause="tick-b").repaired == []
    assert len(world.serving.calls_of("get_service")) == reads  # not read again yet
    world.clock.advance(1)
    assert sweep(world.deps, cause="tick-c").repaired == ["iris"]
    assert tags_of(world) == [(v2, 100, STABLE_TAG)]


def test_a_repair_the_cluster_refuses_skips_that_service_only() -> None:
    world = world_with()
    world.register(name="wine", scaling={"keep_previous_warm_seconds": WINDOW})
    ended(world, "v1", "v2")  # both services follow the repository: each promoted v2
    for name in ("iris", "wine"):
        world.serving.set_traffic("models", name, [TrafficTarget(world.revision("v2", name), 100)])
    world.serving.fail_next("set_traffic", PermanentError("patch refused: forbidden"))

    first = sweep(world.deps, cause="tick-a")  # one refusal does not end the tick's pass
    second = sweep(world.deps, cause="tick-b")

    assert len(first.repaired) == 1
    assert sorted(first.repaired + second.repaired) == ["iris", "wine"]
    for name in ("iris", "wine"):
        assert world.serving.traffic_of("models", name, with_previous=True) == {
            world.revision("v2", name): 100,
            world.revision("v1", name): 0,
        }
