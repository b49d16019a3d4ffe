"""The validate step: warm-up retries within a deadline, the missing tag URL, the golden set."""

from __future__ import annotations

from typing import Any

from shared.phases import Phase
from shared.serving import CANDIDATE_TAG, ServiceView
from tests.fakes import FakeResponse, Pipeline, World, digest_of

WARMUP = 20.0
RETRY = 2.0


def stable_v1(**spec: Any) -> tuple[World, Pipeline]:
    """v1 promoted (first deploy) with a validation section that retries a cold candidate."""
    world = World.create()
    validation = {
        "timeout_seconds": 5,
        "warmup_seconds": WARMUP,
        "retry_seconds": RETRY,
        "requests": [
            {"name": "ok", "path": "/predict", "json": {"x": 1}, "expect": {"json": {"ok": True}}}
        ],
        **spec,
    }
    world.register(validation=validation)
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()
    assert world.only_rollout(digest_of("v1")).phase is Phase.PROMOTED
    return world, pipeline


def test_a_cold_candidate_is_retried_then_validated() -> None:
    """503 while warming up is tried again later (never by waiting in the step); then it passes."""
    world, pipeline = stable_v1()
    world.serving.respond(world.revision("v2"), FakeResponse(503, {"error": "cold"}))
    world.push(pipeline, "v2")

    def attempts() -> int:
        found = [r for r in world.rollouts() if r.digest == digest_of("v2")]
        return found[0].validation_attempts if found else 0

    pipeline.run(until=lambda: attempts() >= 3)
    cold = world.only_rollout(digest_of("v2"))
    assert cold.phase is Phase.VALIDATING and cold.due_at is not None
    assert cold.due_at > world.clock.now()  # the next attempt is a due time, not a held instance
    world.serving.respond(world.revision("v2"), FakeResponse(200, {"ok": True}))
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.PROMOTED
    passed = next(d for d in world.store.decisions(v2.id) if d.outcome == "validation_passed")
    assert passed.values["attempt"] >= 4 and "after" in passed.reason


def test_a_candidate_that_never_warms_up_fails_at_the_deadline() -> None:
    """Past the warm-up deadline the rollout fails with the reason; traffic never moved."""
    world, pipeline = stable_v1()
    world.serving.respond(world.revision("v2"), FakeResponse(503, {"error": "cold"}))
    started = world.clock.now()
    world.push(pipeline, "v2")
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.FAILED
    assert v2.reason is not None and v2.reason.startswith(
        f"candidate not answering within the {WARMUP:g} s warm-up"
    )
    assert (v2.ended_at - started).total_seconds() <= WARMUP + RETRY + 2  # type: ignore[operator]
    assert world.traffic() == {world.revision("v1"): 100}


def test_a_tag_url_that_never_appears_ends_the_rollout_with_a_reason() -> None:
    """No `candidate` tag URL in the route: retried within the warm-up, then FAILED, not forever."""
    world, pipeline = stable_v1()
    real_get = world.serving.get_service

    def without_candidate_url(namespace: str, name: str) -> ServiceView | None:
        view = real_get(namespace, name)
        if view is None:
            return None
        traffic = [t for t in view.traffic if t.tag != CANDIDATE_TAG]
        return ServiceView(view.name, view.namespace, traffic, ready=view.ready, url=view.url)

    world.serving.get_service = without_candidate_url  # type: ignore[method-assign]
    world.push(pipeline, "v2")
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.FAILED
    assert v2.reason is not None and "no 'candidate' tag URL" in v2.reason
    assert f"within the {WARMUP:g} s warm-up" in v2.reason
    assert not pipeline.errors()  # retried by due times, never by raising for redelivery


GOLDEN = {
    "requests": [{"json": {"instances": [[i, i]]}} for i in range(12)],
    "path": "/predict",
    "fields": {"predictions": "exact"},
    "min_agreement": 0.9,
}


def test_the_golden_set_catches_a_candidate_that_passes_every_smoke_request() -> None:
    """Stable and candidate answer differently: FAILED, figures and at most five cases logged."""
    world, pipeline = stable_v1(golden=GOLDEN)
    world.serving.respond(world.revision("v1"), FakeResponse(200, {"ok": True, "predictions": [1]}))
    world.serving.respond(world.revision("v2"), FakeResponse(200, {"ok": True, "predictions": [2]}))
    world.push(pipeline, "v2")
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.FAILED
    assert v2.reason is not None and v2.reason.startswith("golden set: agreement 0.0% (0/12")
    failed = world.store.decisions(v2.id)[-1]
    assert all(check["passed"] for check in failed.values["checks"])
    golden = failed.values["golden"]
    assert (golden["agreement"], golden["answers"]) == (0.0, 12)
    assert len(golden["disagreements"]) == 5
    assert failed.thresholds["golden"]["min_agreement"] == 0.9
    assert world.traffic() == {world.revision("v1"): 100}


def test_the_golden_set_passes_an_agreeing_candidate_and_is_skipped_on_a_first_deploy() -> None:
    """Same answers: the step moves on and says so; a first deploy has nothing to compare with."""
    world, pipeline = stable_v1(golden=GOLDEN)
    first = world.only_rollout(digest_of("v1"))
    validated = next(d for d in world.store.decisions(first.id) if d.outcome.startswith("first"))
    assert "golden set skipped (first deploy" in validated.reason
    same = FakeResponse(200, {"ok": True, "predictions": [1]})
    world.serving.respond(world.revision("v1"), same)
    world.serving.respond(world.revision("v2"), same)
    world.push(pipeline, "v2")
    pipeline.run()
    v2 = world.only_rollout(digest_of("v2"))
    passed = next(d for d in world.store.decisions(v2.id) if d.outcome == "validation_passed")
    assert passed.values["golden"]["agreement"] == 1.0
    assert "golden set: agreement 100.0%" in passed.reason


def test_a_route_that_lost_the_candidate_tag_is_repaired_and_validated() -> None:
    """A racing write left only the stable revision in the route: validate re-applies the weights."""
    world, pipeline = stable_v1()
    world.push(pipeline, "v2")

    def validating() -> bool:
        found = [r for r in world.rollouts() if r.digest == digest_of("v2")]
        return bool(found) and found[0].phase is Phase.VALIDATING

    pipeline.run(until=validating)
    stable_only = [t for t in world.serving.traffic[("models", "iris")] if t.tag != CANDIDATE_TAG]
    world.serving.traffic[("models", "iris")] = [
        type(t)(t.revision, 100, t.tag) for t in stable_only
    ]
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.PROMOTED, v2.reason
    assert v2.validation_attempts >= 2
