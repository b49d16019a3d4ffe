"""A rollout is judged by the spec it started with, even when the service is re-registered meanwhile."""

from __future__ import annotations

from shared.phases import Phase
from shared.steps.engine import rollout_spec
from tests.fakes import FakeResponse, World, digest_of


def test_rollout_keeps_the_spec_it_started_with() -> None:
    """Re-registering with other steps and a failing smoke check does not change a running rollout."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()
    world.push(pipeline, "v2")
    # Ingest only: the rollout exists with its snapshot, nothing else has run yet.
    pipeline.deliver_next()
    v2 = world.only_rollout(digest_of("v2"))
    assert v2.spec["steps"] == [10, 50, 100]

    stricter = {"name": "s", "path": "/predict", "expect": {"status": 200, "json": {"ok": "never"}}}
    world.register(steps=[25, 100], validation={"requests": [stricter]})
    world.serving.respond(world.revision("v2"), FakeResponse(200, {"ok": True}))
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.PROMOTED
    applied = [
        d.values["percent"] for d in world.store.decisions(v2.id) if d.outcome == "step_applied"
    ]
    assert applied == [10, 50, 100]


def test_records_without_a_snapshot_fall_back_to_the_service_spec() -> None:
    """Rollouts written before snapshots existed are judged by the service's current spec."""
    world = World.create()
    spec = world.register(steps=[30, 100])
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.deliver_next()
    rollout = world.only_rollout(digest_of("v1")).evolve(spec={})
    service = world.store.get_service("iris")
    resolved = rollout_spec(rollout, service)
    assert resolved is not None and resolved.steps == spec.steps == [30, 100]
    assert rollout_spec(rollout, None) is None
