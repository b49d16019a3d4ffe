"""A deploy step that read its rollout before `DELETE /services/NAME` was written never leaves the
Knative Service behind: whatever it re-created after the delete removed it is removed again."""

from __future__ import annotations

from typing import Any

import pytest

from events.steps import StepType
from shared.phases import Phase
from shared.services_admin import delete_service
from shared.serving import RevisionTemplate, TrafficTarget
from shared.store import Change
from tests.fakes import World, digest_of

NAMESPACE = "models"


def deleting_during_deploy(world: World, *, crash_after: bool = False) -> list[Any]:
    """Make the next deploy call wait until the delete is written and carried out, then create."""
    serving = world.serving
    real_deploy = serving.deploy
    answers: list[Any] = []

    def deploy(
        namespace: str, name: str, template: RevisionTemplate, traffic: list[TrafficTarget]
    ) -> None:
        if not answers:
            # The step read the DEPLOYING rollout; the delete lands now, before the create.
            answers.append(
                delete_service(world.deps, name, principal="ann", key="del-1", reason="gone")
            )
        real_deploy(namespace, name, template, traffic)
        if crash_after and len(answers) == 1:
            answers.append("crashed")
            raise ConnectionError("instance lost after creating the Service")

    serving.deploy = deploy  # type: ignore[method-assign]
    return answers


@pytest.mark.parametrize("with_stable", [False, True], ids=["first-deploy", "with-stable"])
def test_a_deploy_racing_a_delete_leaves_no_service_behind(with_stable: bool) -> None:
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    if with_stable:
        world.push(pipeline, "v1")
        pipeline.run()
    answers = deleting_during_deploy(world)
    world.push(pipeline, "v2")
    pipeline.run()

    assert answers and answers[0]["status"] == "applied"
    assert world.only_rollout(digest_of("v2")).phase is Phase.DELETED
    # The deploy lost its write to the delete; the engine's reconcile removed what it re-created.
    assert world.serving.get_service(NAMESPACE, "iris") is None
    assert not [key for key in world.serving.revisions if key[0] == NAMESPACE]
    assert not pipeline.errors()
    record = world.store.get_service("iris")
    assert record is not None and record.value.deleted_at is not None


def test_a_deploy_that_crashed_after_re_creating_the_service_removes_it_on_redelivery() -> None:
    """The instance is lost between the create and its write: the redelivered step finds the
    rollout DELETED and removes the Service again before dropping the event."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    answers = deleting_during_deploy(world, crash_after=True)
    world.push(pipeline, "v2")
    pipeline.run()

    assert answers[1:] == ["crashed"]
    assert [type(e) for e in pipeline.errors()] == [ConnectionError]
    assert world.serving.get_service(NAMESPACE, "iris") is None
    deploys = [d for d in pipeline.deliveries if d.message.topic == StepType.DEPLOY.topic]
    assert len(deploys) == 2 and deploys[-1].result.status == "stale"


def test_a_stale_step_of_a_deleted_then_registered_service_leaves_the_new_service_alone() -> None:
    """Registered again and redeployed: a straggler of the DELETED rollout must not remove it."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()
    world.push(pipeline, "v2")
    assert pipeline.drain(
        until=lambda: any(
            r.digest == digest_of("v2") and r.phase is Phase.WAITING_READY for r in world.rollouts()
        )
    )
    straggler = pipeline.queue[:]
    pipeline.queue.clear()
    delete_service(world.deps, "iris", principal="ann", key="del-1", reason="gone")
    world.register()
    world.push(pipeline, "v3")
    pipeline.run()
    assert world.traffic() == {world.revision("v3"): 100}

    pipeline.queue.extend(straggler)
    pipeline.run()
    assert world.traffic() == {world.revision("v3"): 100}
    assert world.only_rollout(digest_of("v3")).phase is Phase.PROMOTED
    assert world.only_rollout(digest_of("v2")).phase is Phase.DELETED


def test_a_push_racing_a_delete_is_re_checked_by_the_engine_and_ignored() -> None:
    """The delete is written while the push's rollout is being written: the engine's retry re-reads
    the service, finds it deleted and records the push as ignored; nothing is deployed."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()
    deleted: list[Any] = []

    def delete_concurrently(change: Change) -> None:
        if not deleted and any(r.digest == digest_of("v2") for r, _ in change.rollouts):
            deleted.append(
                delete_service(world.deps, "iris", principal="ann", key="del-1", reason="gone")
            )

    world.store.before_commit.append(delete_concurrently)
    world.push(pipeline, "v2")
    pipeline.run()

    assert deleted and world.store.failed_commits == 1
    assert not [r for r in world.rollouts() if r.digest == digest_of("v2")]
    assert any("was deleted" in e.reason for e in world.store.list_ignored())
    assert world.serving.get_service(NAMESPACE, "iris") is None
