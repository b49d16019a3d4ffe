"""The previous stable revision stays routed (0 %, tag `previous`) and warm after a promotion, for
the spec's window; then the tick releases it, once, through the engine's command path."""

from __future__ import annotations

from typing import Any

import pytest

from shared.phases import Phase
from shared.serving import PREVIOUS_TAG, STABLE_TAG
from shared.spec import SpecError, parse_spec
from shared.steps import warm_window
from shared.steps.sweep import sweep
from tests.fakes import Pipeline, World, digest_of, iris_spec
from tests.unit.test_rules_rollback import request_rollback

WINDOW = 120


def promoted(*tags: str, **scaling: Any) -> tuple[World, Pipeline]:
    """iris with `scaling`, each tag pushed and run to PROMOTED in turn."""
    world = World.create()
    world.register(scaling={"keep_previous_warm_seconds": WINDOW, **scaling})
    pipeline = world.pipeline()
    for tag in tags:
        world.push(pipeline, tag)
        pipeline.run()
        assert world.only_rollout(digest_of(tag)).phase is Phase.PROMOTED
    return world, pipeline


def tags_of(world: World) -> list[tuple[str, int, str | None]]:
    """iris's traffic block as (revision, percent, tag)."""
    return [(t.revision, t.percent, t.tag) for t in world.serving.traffic[("models", "iris")]]


def test_the_warm_window_is_validated_naming_the_field() -> None:
    assert parse_spec(iris_spec()).scaling.warm_seconds == 600  # the default
    assert parse_spec(iris_spec(scaling={"min_scale": 0})).scaling.warm_seconds == 0
    for bad, expected in [
        ({"keep_previous_warm_seconds": -1}, "scaling.keep_previous_warm_seconds"),
        ({"keep_previous_warm_seconds": 86_401}, "scaling.keep_previous_warm_seconds"),
        ({"keep_previous_warm_seconds": "soon"}, "scaling.keep_previous_warm_seconds"),
        (
            {"min_scale": 0, "keep_previous_warm_seconds": 60},
            "scaling.keep_previous_warm_seconds (60) needs scaling.min_scale of at least 1",
        ),
    ]:
        with pytest.raises(SpecError) as caught:
            parse_spec(iris_spec(scaling=bad))
        assert expected in str(caught.value)


def test_at_promotion_the_old_stable_stays_routed_at_zero_with_its_window_recorded() -> None:
    world, _ = promoted("v1", "v2")
    v1, v2 = world.revision("v1"), world.revision("v2")
    assert tags_of(world) == [(v2, 100, STABLE_TAG), (v1, 0, PREVIOUS_TAG)]
    rollout = world.only_rollout(digest_of("v2"))
    service = world.store.get_service("iris")
    assert service is not None
    record = service.value
    assert rollout.previous_warm_until is not None
    assert (record.previous_revision, record.previous_warm_until) == (
        v1,
        rollout.previous_warm_until,
    )
    assert (rollout.previous_warm_until - rollout.ended_at).total_seconds() == WINDOW  # type: ignore[operator]
    entry = world.store.decisions(rollout.id)[-1]
    assert f"{v1} stays routed at 0% (tag previous) and warm for {WINDOW}s" in entry.reason
    assert entry.values["previous_warm_until"] == rollout.previous_warm_until.isoformat()
    assert entry.thresholds == {"keep_previous_warm_seconds": WINDOW}
    # Every revision carries the min-scale that keeps it warm while routed at 0 %.
    templates = [call[2] for call in world.serving.calls_of("deploy")]
    assert [t.annotations["autoscaling.knative.dev/min-scale"] for t in templates] == ["1", "1"]


def test_a_first_deploy_and_a_zero_window_keep_nothing() -> None:
    world, _ = promoted("v1")
    assert tags_of(world) == [(world.revision("v1"), 100, STABLE_TAG)]
    world, _ = promoted("v1", "v2", keep_previous_warm_seconds=0)
    assert tags_of(world) == [(world.revision("v2"), 100, STABLE_TAG)]
    service = world.store.get_service("iris")
    assert service is not None and service.value.previous_revision is None


def test_after_the_window_the_tick_releases_it_once_as_a_recorded_command() -> None:
    world, pipeline = promoted("v1", "v2")
    v2 = world.revision("v2")
    world.clock.advance(WINDOW - 1)
    pipeline.tick()
    assert len(tags_of(world)) == 2  # not yet
    world.clock.advance(1)
    before = world.store.commits
    report = sweep(world.deps, cause="tick-a")
    again = sweep(world.deps, cause="tick-b")  # a second tick (or a redelivered one)

    assert report.released == ["iris"] and again.released == []
    assert world.store.commits == before + 1  # one preconditioned write: record and request
    assert tags_of(world) == [(v2, 100, STABLE_TAG)]
    service = world.store.get_service("iris")
    assert service is not None
    assert (service.value.previous_revision, service.value.previous_warm_until) == (None, None)
    key = f"iris/{world.revision('v1')}/{world.only_rollout(digest_of('v2')).previous_warm_until.isoformat()}"  # type: ignore[union-attr]
    from shared.idempotency import request_id

    request = world.store.get_request(request_id(warm_window.ORIGIN, key))
    assert request is not None and request.status == "applied"
    assert request.command == "release_previous" and request.principal == warm_window.PRINCIPAL
    assert "tag previous removed" in request.detail


def test_a_tick_after_the_window_leaves_a_rollout_in_flights_traffic_alone() -> None:
    """v3 is in flight when v1's window would end: its birth ended the window, so the tick has
    nothing to release and the traffic stays v3's to set."""
    world, pipeline = promoted("v1", "v2")
    world.register(
        scaling={"keep_previous_warm_seconds": WINDOW}, bake_seconds=WINDOW + 10, steps=[10, 100]
    )
    world.push(pipeline, "v3")
    pipeline.run(
        until=lambda: any(
            r.digest == digest_of("v3") and r.phase is Phase.SHIFTING for r in world.rollouts()
        )
    )
    pipeline.drain()
    shifting = tags_of(world)
    world.clock.advance(WINDOW)
    report = sweep(world.deps, cause="tick")
    assert report.released == []
    assert tags_of(world) == shifting
    pipeline.run(max_ticks=2000)
    v3 = world.only_rollout(digest_of("v3"))
    assert v3.phase is Phase.PROMOTED, v3.reason


def test_a_rollback_during_the_window_goes_to_the_warm_revision_at_once() -> None:
    world, _ = promoted("v1", "v2")
    v1 = world.revision("v1")
    world.clock.advance(WINDOW / 2)
    deploys = len(world.serving.calls_of("deploy"))
    report = request_rollback(world, {"service": "iris", "reason": "v2 misbehaves"})
    assert report.target_revision == v1
    assert tags_of(world) == [(v1, 100, STABLE_TAG)]
    assert len(world.serving.calls_of("deploy")) == deploys  # nothing created: it was serving
    service = world.store.get_service("iris")
    assert service is not None
    assert (service.value.stable_revision, service.value.previous_revision) == (v1, None)
    world.clock.advance(WINDOW)
    assert sweep(world.deps, cause="tick").released == []  # nothing left to release


def test_a_new_rollout_ends_an_open_window_it_takes_the_traffic_block_from() -> None:
    world, pipeline = promoted("v1", "v2")
    world.push(pipeline, "v3")
    pipeline.deliver_next()  # ingest
    service = world.store.get_service("iris")
    assert service is not None and service.value.previous_revision is None
    pipeline.run()
    v2, v3 = world.revision("v2"), world.revision("v3")
    assert tags_of(world) == [(v3, 100, STABLE_TAG), (v2, 0, PREVIOUS_TAG)]


def test_deleting_the_service_ends_its_window() -> None:
    from shared.commands import CommandRequest
    from shared.steps.command_acts import rollout_acts
    from shared.steps.commands import run_command

    world, _ = promoted("v1", "v2")
    request = CommandRequest(
        command="delete", principal="ann@example.com", key="d1", origin="api", service="iris"
    )
    run_command(world.deps, request, rollout_acts())
    world.clock.advance(WINDOW)
    assert world.deps.store.services_warm_until(world.clock.now()) == []
    assert sweep(world.deps, cause="tick").released == []
