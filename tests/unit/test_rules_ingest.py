"""Ingest's decisions: which services a push starts, and which pushes are answered without a rollout."""

from __future__ import annotations

from events.pubsub import PubSubMessage
from shared.phases import Phase
from shared.steps.ingest import handle
from tests.fakes import REPOSITORY, World, digest_of, registry_message


def push_message(tag: str, message_id: str) -> PubSubMessage:
    """A registry INSERT of iris:<tag>."""
    return registry_message(
        message_id, digest=f"{REPOSITORY}@{digest_of(tag)}", tag=f"{REPOSITORY}:{tag}"
    )


def test_a_push_starts_a_rollout_for_each_following_service_that_accepts_the_tag() -> None:
    """Two services follow the repository; the one whose filter refuses the tag is told why."""
    world = World.create()
    world.register()
    world.register(name="iris-canary", tag_filter="canary-.*")
    world.register(name="iris-all", tag_filter=".*")
    report = handle(world.deps, push_message("v1", "m-1"))
    started = {r.service for r in world.rollouts("iris") + world.rollouts("iris-all")}
    assert len(report.started) == 2
    assert started == {"iris", "iris-all"}
    assert report.ignored == ["tag 'v1' does not match iris-canary's tag filter 'canary-.*'"]
    ignored = world.store.list_ignored()
    assert [e.message_id for e in ignored] == ["m-1-iris-canary"]
    assert sorted(e.event.service for e in world.publisher.sent) == ["iris", "iris-all"]


def test_the_stable_image_pushed_again_is_ignored() -> None:
    """Re-tagging the image that already serves starts nothing."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()
    report = handle(world.deps, push_message("v1", "m-again"))
    assert report.started == [] and "already the stable image of iris" in report.ignored[0]
    assert len(world.rollouts()) == 1


def test_the_same_digest_pushed_again_mid_rollout_is_ignored() -> None:
    """A second notification for the image already rolling out does not restart it."""
    world = World.create()
    world.register()
    first = handle(world.deps, push_message("v1", "m-1"))
    again = handle(world.deps, push_message("v1", "m-2"))
    assert again.started == [] and f"already rolling out as {first.started[0]}" in again.ignored[0]
    assert [r.phase for r in world.rollouts()] == [Phase.DEPLOYING]
    service = world.store.get_service("iris")
    assert service is not None and service.value.active_rollout_id == first.started[0]
