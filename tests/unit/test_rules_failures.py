"""Failing candidates: validation, revision failures, the readiness deadline, and refused deploys."""

from __future__ import annotations

import json
from dataclasses import replace as dataclasses_replace
from typing import Any

import pytest

from shared.commands import CommandRequest, Refused
from shared.errors import PermanentError, RetryableError
from shared.phases import Phase
from shared.serving import RevisionHealth
from shared.steps.command_acts import rollout_acts
from shared.steps.commands import run_command
from shared.steps.sweep import sweep
from tests.fakes import FakeResponse, Pipeline, World, digest_of

DEADLINE = 60.0
POLL = 2.0


def v2_stable(**options: Any) -> tuple[World, Pipeline]:
    """v1 then v2 promoted: v2 is the stable revision the failures must leave alone."""
    world = World.create(ready_poll_seconds=POLL, **options)
    world.register(readiness_deadline_seconds=DEADLINE)
    pipeline = world.pipeline()
    for tag in ("v1", "v2"):
        world.push(pipeline, tag)
        pipeline.run()
        world.clock.advance(30)
    assert world.traffic() == {world.revision("v2"): 100}
    return world, pipeline


def assert_stable_untouched(world: World, failed_tag: str) -> None:
    """Traffic and the service record still say v2; the failed candidate holds nothing."""
    assert world.traffic() == {world.revision("v2"): 100}
    service = world.store.get_service("iris")
    assert service is not None
    assert service.value.stable_revision == world.revision("v2")
    assert service.value.active_rollout_id is None
    rollout = world.only_rollout(digest_of(failed_tag))
    assert (rollout.traffic_percent, rollout.due_at) == (0, None)
    assert rollout.ended_at is not None and not rollout.active
    assert not world.serving.missing_revision_writes


def test_validation_failure_fails_with_the_reason_and_keeps_traffic_on_stable() -> None:
    """v3 answers wrongly: FAILED, the reason names the check and field, raw values are logged."""
    world, pipeline = v2_stable()
    answer = {"ok": False, "label": "?"}
    world.serving.respond(world.revision("v3"), FakeResponse(200, answer))
    world.push(pipeline, "v3")
    pipeline.run()

    v3 = world.only_rollout(digest_of("v3"))
    assert v3.phase is Phase.FAILED
    assert v3.reason == "validation failed: predict-setosa: $.ok: expected true, got false"
    failed = world.store.decisions(v3.id)[-1]
    assert (failed.outcome, failed.phase_from, failed.phase_to) == (
        "validation_failed",
        "VALIDATING",
        "FAILED",
    )
    check = failed.values["checks"][0]
    assert (check["status"], check["passed"], check["bytes"]) == (
        200,
        False,
        len(json.dumps(answer)),
    )
    assert failed.values["url"] == "http://candidate-iris.models.example.com"
    assert failed.thresholds["predict-setosa"]["json"] == {"ok": True}
    assert failed.message_id == "push-v3"
    assert_stable_untouched(world, "v3")
    # v3 never held user traffic at any moment.
    for write in world.serving.traffic_writes:
        assert all(t.percent == 0 for t in write.traffic if t.revision == world.revision("v3"))


def test_validation_failure_on_a_server_error() -> None:
    """A 500 from the candidate is a failed check with the status in the reason."""
    world, pipeline = v2_stable()
    world.serving.respond(world.revision("v3"), FakeResponse(500, {"error": "boom"}))
    world.push(pipeline, "v3")
    pipeline.run()
    v3 = world.only_rollout(digest_of("v3"))
    assert v3.phase is Phase.FAILED and v3.reason is not None
    assert "status 500, expected 200" in v3.reason
    assert_stable_untouched(world, "v3")


def test_revision_failure_fails_with_the_knative_reason() -> None:
    """v4's container exits: FAILED with Knative's ExitCode reason and message."""
    world, pipeline = v2_stable()
    world.serving.fail_image(
        digest_of("v4"),
        RevisionHealth(
            exists=True,
            ready=False,
            reason="ExitCode1",
            message="Container failed with: ModuleNotFoundError: No module named 'sklearn'",
        ),
    )
    world.push(pipeline, "v4")
    pipeline.run()
    v4 = world.only_rollout(digest_of("v4"))
    assert v4.phase is Phase.FAILED
    assert v4.reason == (
        f"revision {world.revision('v4')} failed: ExitCode1: "
        "Container failed with: ModuleNotFoundError: No module named 'sklearn'"
    )
    last = world.store.decisions(v4.id)[-1]
    assert (last.outcome, last.values["reason"]) == ("revision_failed", "ExitCode1")
    assert_stable_untouched(world, "v4")


def test_readiness_deadline_fails_without_holding_an_instance() -> None:
    """A revision that never gets Ready fails at the deadline; it was polled by ticks, not waited on."""
    world, pipeline = v2_stable()
    world.serving.startup_seconds = 10_000
    world.push(pipeline, "v5")
    started = world.clock.now()
    pipeline.run()
    v5 = world.only_rollout(digest_of("v5"))
    assert v5.phase is Phase.FAILED and v5.reason is not None
    assert "not Ready by the readiness deadline" in v5.reason
    waited = (world.clock.now() - started).total_seconds()
    assert DEADLINE <= waited <= DEADLINE + POLL + pipeline.tick_seconds
    checks = [a for a in world.serving.calls_of("revision_health") if a[1] == world.revision("v5")]
    assert DEADLINE / POLL <= len(checks) <= DEADLINE / POLL + 2  # one short check per poll period
    last = world.store.decisions(v5.id)[-1]
    assert last.outcome == "ready_deadline_exceeded" and "ready_deadline_at" in last.thresholds
    assert_stable_untouched(world, "v5")


def test_a_refused_deploy_fails_the_rollout() -> None:
    """The cluster refuses the Service patch for good: FAILED with the API's message, stable kept."""
    world, pipeline = v2_stable()
    world.serving.fail_next("deploy", PermanentError("admission webhook denied: bad annotation"))
    world.push(pipeline, "v6")
    pipeline.run()
    v6 = world.only_rollout(digest_of("v6"))
    assert (v6.phase, v6.reason) == (Phase.FAILED, "admission webhook denied: bad annotation")
    assert world.store.decisions(v6.id)[-1].outcome == "deploy_failed"
    assert_stable_untouched(world, "v6")


def test_a_transient_cluster_error_is_retried_until_it_works() -> None:
    """A retryable API error nacks the message; redelivery completes the rollout."""
    world, pipeline = v2_stable()
    outage = RetryableError("Kubernetes API unreachable")
    world.serving.fail_next("deploy", outage, times=3)
    world.push(pipeline, "v7")
    pipeline.run()
    assert pipeline.errors() == [outage] * 3
    assert world.only_rollout(digest_of("v7")).phase is Phase.PROMOTED
    assert world.traffic() == {world.revision("v7"): 100}


def test_a_failed_first_deploy_has_nothing_to_return_to() -> None:
    """With no stable revision the failed candidate keeps the only route; no stable is recorded."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    world.serving.respond(world.revision("v1"), FakeResponse(503, {"ok": False}))
    world.push(pipeline, "v1")
    pipeline.run()
    v1 = world.only_rollout(digest_of("v1"))
    assert v1.phase is Phase.FAILED
    service = world.store.get_service("iris")
    assert service is not None and service.value.stable_revision is None
    assert service.value.active_rollout_id is None
    # The next good push then deploys as a first deploy again and becomes stable.
    world.clock.advance(30)
    world.push(pipeline, "v2")
    pipeline.run()
    assert world.only_rollout(digest_of("v2")).phase is Phase.PROMOTED
    assert world.traffic() == {world.revision("v2"): 100}


def test_validation_whose_tag_url_never_appears_ends_at_its_deadline() -> None:
    """Issue 7: VALIDATING with no candidate tag URL used to be retried by every tick, forever."""
    world, pipeline = v2_stable(lost_event_grace_seconds=5)
    real_get_service = world.serving.get_service

    def without_tag_urls(namespace: str, name: str) -> Any:
        view = real_get_service(namespace, name)
        if view is None:
            return None
        from dataclasses import replace

        return replace(view, traffic=[replace(t, url=None) for t in view.traffic])

    world.serving.get_service = without_tag_urls  # type: ignore[method-assign]
    world.push(pipeline, "v3")
    pipeline.run(max_ticks=200)

    rollout = world.only_rollout(digest_of("v3"))
    assert rollout.phase is Phase.FAILED
    assert "warm-up" in (rollout.reason or "") and "tag URL" in (rollout.reason or "")
    last = world.store.decisions(rollout.id)[-1]
    assert (last.outcome, last.phase_from) == ("validation_failed", "VALIDATING")
    assert_stable_untouched(world, "v3")


def v3_at_its_first_step(world: World, pipeline: Pipeline) -> None:
    """v3 holding 10 % of the traffic, baking (so its next check is a while away)."""
    world.register(readiness_deadline_seconds=DEADLINE, bake_seconds=30.0)
    world.push(pipeline, "v3")
    pipeline.run(
        until=lambda: any(
            r.digest == digest_of("v3") and r.phase is Phase.SHIFTING and r.traffic_percent == 10
            for r in world.rollouts()
        )
    )


def test_a_service_deleted_behind_hekatons_back_ends_its_rollout_saying_so() -> None:
    """`kubectl delete ksvc` mid-rollout: every later step would be refused (404) forever; the
    rollout ends at its next step with the reason, and the tick stops re-emitting it."""
    world, pipeline = v2_stable(lost_event_grace_seconds=30.0)
    v3_at_its_first_step(world, pipeline)
    world.serving.traffic.pop(("models", "iris"))  # deleted with kubectl

    pipeline.run()  # ends only when nothing is left to deliver or re-emit

    v3 = world.only_rollout(digest_of("v3"))
    assert v3.phase is Phase.ROLLED_BACK and not v3.active
    last = world.store.decisions(v3.id)[-1]
    assert last.outcome == "step_impossible"
    assert last.reason.startswith("the shift step cannot go on: ")
    assert "not found" in last.reason and "no traffic to return" in last.reason
    service = world.store.get_service("iris")
    assert service is not None and service.value.active_rollout_id is None
    assert not pipeline.errors()  # nothing retried: ended, not looping
    tick_emits = sum(1 for p in world.publisher.sent if p.source == "tick")
    world.clock.advance(600)
    pipeline.run()
    assert sum(1 for p in world.publisher.sent if p.source == "tick") == tick_emits


def test_an_operator_abort_ends_a_rollout_whose_service_was_deleted() -> None:
    world, pipeline = v2_stable()
    v3_at_its_first_step(world, pipeline)
    world.serving.traffic.pop(("models", "iris"))

    request = CommandRequest(
        command="abort", principal="ann@x", key="k-1", origin="api", service="iris"
    )
    result = run_command(world.deps, request, rollout_acts())

    v3 = world.only_rollout(digest_of("v3"))
    assert v3.phase is Phase.ROLLED_BACK
    assert "no traffic to return" in result.detail
    assert "no traffic to return" in world.store.decisions(v3.id)[-1].values["traffic"]


def test_an_operator_rollback_of_a_rollout_whose_service_was_deleted_says_to_abort() -> None:
    """No traffic can be moved: the rollback is refused (recorded, nothing changed) and the answer
    names the command that does end the rollout."""
    world, pipeline = v2_stable()
    v3_at_its_first_step(world, pipeline)
    world.serving.traffic.pop(("models", "iris"))
    request = CommandRequest(
        command="rollback", principal="ann@x", key="k-2", origin="api", service="iris"
    )

    with pytest.raises(Refused) as refused:
        run_command(world.deps, request, rollout_acts())

    assert "rollback of iris refused" in str(refused.value)
    assert "the Knative Service models/iris is not in the cluster" in str(refused.value)
    assert "`hekaton abort iris` ends its rollout" in str(refused.value)
    assert world.only_rollout(digest_of("v3")).phase is Phase.SHIFTING


def test_a_traffic_write_the_cluster_refuses_ends_the_rollout_and_says_traffic_was_not_returned() -> (
    None
):
    world, pipeline = v2_stable()
    v3_at_its_first_step(world, pipeline)
    refused = PermanentError("patch Knative Service models/iris was refused (403): forbidden")
    world.serving.fail_next("set_traffic", refused, times=2)  # the step's write, then the return

    world.clock.advance(30)
    pipeline.run()

    v3 = world.only_rollout(digest_of("v3"))
    assert v3.phase is Phase.ROLLED_BACK
    last = world.store.decisions(v3.id)[-1]
    assert "cannot go on: patch Knative Service models/iris was refused (403)" in last.reason
    assert (
        "traffic not returned: patch Knative Service models/iris was refused (403)" in last.reason
    )
    # The record says what the cluster still routes, not the 0 % hekaton could not set.
    assert "the candidate may still take 10 %" in last.reason
    assert v3.traffic_percent == 10 and last.traffic_percent == 10
    assert world.traffic() == {world.revision("v2"): 90, world.revision("v3"): 10}
    service = world.store.get_service("iris")
    assert service is not None and service.value.active_rollout_id is None

    sweep(world.deps, cause="tick")  # the right is back: the tick's route repair returns it

    assert world.traffic() == {world.revision("v2"): 100}


def test_traffic_not_returned_past_the_repair_window_is_returned_by_a_rollback_to_stable() -> None:
    world, pipeline = v2_stable()
    v3_at_its_first_step(world, pipeline)
    refused = PermanentError("patch Knative Service models/iris was refused (403): forbidden")
    world.serving.fail_next("set_traffic", refused, times=2)
    world.clock.advance(30)
    pipeline.run()
    v2 = world.revision("v2")
    reason = world.store.decisions(world.only_rollout(digest_of("v3")).id)[-1].reason
    assert f"or `hekaton rollback iris --to {v2}` does it at once" in reason

    world.clock.advance(world.deps.settings.route_repair_seconds + 1)
    sweep(world.deps, cause="tick")  # out of the repair window: the tick no longer looks
    assert world.traffic() == {v2: 90, world.revision("v3"): 10}

    request = CommandRequest(
        command="rollback", principal="ann@x", key="k-3", origin="api", service="iris", revision=v2
    )
    result = run_command(world.deps, request, rollout_acts())

    assert result.status == "applied"
    assert world.traffic() == {v2: 100}
    with pytest.raises(Refused, match=f"already serves {v2}"):  # now routed at rest: nothing to do
        run_command(world.deps, dataclasses_replace(request, key="k-4"), rollout_acts())
