"""Ingest is an edge of the table run by the engine: the birth skeleton retries, writes and publishes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from events.pubsub import PubSubMessage
from events.steps import StepType
from shared.model import Decision
from shared.phases import IllegalTransition, Outcome, Phase
from shared.steps import engine
from shared.steps.engine import BirthContext, BirthPlan, run_birth
from shared.steps.ingest import handle, rollout_id
from shared.store import Change
from tests.fakes import REPOSITORY, World, digest_of, registry_message


def push(tag: str, message_id: str, world: World, *, later_ms: int = 0) -> PubSubMessage:
    """A registry INSERT of iris:<tag>, published now (plus `later_ms`)."""
    return registry_message(
        message_id,
        digest=f"{REPOSITORY}@{digest_of(tag)}",
        tag=f"{REPOSITORY}:{tag}",
        publish_time=world.clock.now() + timedelta(milliseconds=later_ms),
    )


def spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """Wrap one of the engine's functions; returns the list of the first argument of each call."""
    real = getattr(engine, name)
    calls: list[Any] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("what", args[0] if args else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, name, wrapper)
    return calls


def test_a_push_that_loses_the_write_race_is_retried_and_re_decided_by_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """v3 (pushed later) commits while v2's ingest is writing: the engine's retry re-reads, and v2 is
    born SUPERSEDED instead of taking the service; every write is one of the engine's commits."""
    world = World.create()
    world.register()
    retries = spy(monkeypatch, "retry_on_conflict")
    commits = spy(monkeypatch, "commit_plan")
    v2, v3 = push("v2", "push-v2", world), push("v3", "push-v3", world, later_ms=100)
    raced: list[object] = []

    def ingest_v3_concurrently(change: Change) -> None:
        if not raced and any(r.digest == digest_of("v2") for r, _ in change.rollouts):
            raced.append(handle(world.deps, v3))

    world.store.before_commit.append(ingest_v3_concurrently)
    before = world.store.commits
    report = handle(world.deps, v2)

    assert raced and world.store.failed_commits == 1  # v2's first write lost to v3's
    assert retries == ["ingest for iris", "ingest for iris"]  # the engine's one retry helper
    # v2 tried twice and v3 once, all through commit_plan; v2's first try wrote nothing.
    assert len(commits) == 3 and world.store.commits - before == 2
    older, newer = world.only_rollout(digest_of("v2")), world.only_rollout(digest_of("v3"))
    assert report.started == [older.id]
    assert (older.phase, newer.phase) == (Phase.SUPERSEDED, Phase.DEPLOYING)
    assert (
        older.reason == f"a newer image {newer.image_short} was already pushed (rollout {newer.id})"
    )
    service = world.store.get_service("iris")
    assert service is not None and service.value.active_rollout_id == newer.id
    # Only the newer rollout's first step was published; the loser's commit published nothing.
    assert [(p.event.type, p.event.rollout_id) for p in world.publisher.sent] == [
        (StepType.DEPLOY, newer.id)
    ]
    # Its log is the table's: a birth entry, named and numbered by the engine.
    [entry] = world.store.decisions(older.id)
    assert (entry.id, entry.seq, entry.phase_from, entry.phase_to, entry.message_id) == (
        "0001-created",
        1,
        "",
        "SUPERSEDED",
        "push-v2",
    )


def test_superseding_the_rollout_in_flight_is_the_tables_edge_written_with_the_birth() -> None:
    """v2 is deploying when v3 arrives: v2 moves along (DEPLOYING, superseded) in v3's single write."""
    world = World.create()
    world.register()
    handle(world.deps, push("v2", "push-v2", world))
    commits = world.store.commits
    handle(world.deps, push("v3", "push-v3", world, later_ms=100))
    assert world.store.commits == commits + 1
    older, newer = world.only_rollout(digest_of("v2")), world.only_rollout(digest_of("v3"))
    entries = world.store.decisions(older.id)
    assert [(d.id, d.phase_from, d.phase_to, d.message_id) for d in entries] == [
        ("0001-created", "", "DEPLOYING", "push-v2"),
        ("0002-superseded", "DEPLOYING", "SUPERSEDED", "push-v3"),
    ]
    assert entries[1].values == {"superseded_by": newer.id}
    assert older.seq == 2 and older.ended_at is not None and older.due_at is None


def test_a_redelivered_push_publishes_the_first_step_again_only_until_the_rollout_moved() -> None:
    """The first step's publish may be what was lost; once the rollout moved on, it was not."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    message = push("v1", "push-v1", world)
    first = handle(world.deps, message)
    assert handle(world.deps, message).started == first.started
    assert [p.event.type for p in world.publisher.sent] == [StepType.DEPLOY, StepType.DEPLOY]
    pipeline.run()
    sent = len(world.publisher.sent)
    again = handle(world.deps, message)
    assert again.started == first.started and again.ignored == []
    assert len(world.publisher.sent) == sent
    assert [r.phase for r in world.rollouts()] == [Phase.PROMOTED]


def birth(world: World, decide: Callable[[BirthContext], BirthPlan]) -> None:
    """Run one birth of iris through the engine with a hand-written decision."""
    run_birth(
        world.deps,
        service="iris",
        rollout_id=rollout_id("iris", digest_of("v9"), "m-9"),
        cause="m-9",
        act=decide,
        source="test",
    )


def test_the_engine_refuses_a_birth_whose_first_entry_is_not_the_tables() -> None:
    """A hand-built entry (or a phase no birth allows) is a bug: nothing is written or published."""
    world = World.create()
    world.register()
    handle(world.deps, push("v2", "push-v2", world))
    commits, sent = world.store.commits, len(world.publisher.sent)
    active = world.only_rollout(digest_of("v2"))

    def born_promoted(ctx: BirthContext) -> BirthPlan:
        rollout = active.evolve(id=ctx.rollout_id, phase=Phase.PROMOTED, seq=1)
        entry = Decision(
            id="0001-created",
            seq=1,
            at=ctx.now,
            phase_from="",
            phase_to="PROMOTED",
            outcome="created",
            reason="by hand",
        )
        return BirthPlan(rollout, entry)

    def entry_of_another_rollout(ctx: BirthContext) -> BirthPlan:
        rollout = active.evolve(id=ctx.rollout_id, seq=1)
        return BirthPlan(rollout, replace(world.store.decisions(active.id)[0], seq=2))

    def ends_a_rollout_not_in_flight(ctx: BirthContext) -> BirthPlan:
        rollout = active.evolve(id=ctx.rollout_id, seq=1)
        entry = ctx.first_entry(rollout, Outcome.CREATED, reason="new")
        other = active.evolve(id="someone-else")
        ended = engine.transition(
            other, Outcome.SUPERSEDED, now=ctx.now, reason="not in flight", cause=ctx.cause
        )
        return BirthPlan(rollout, entry, ended=ended)

    for decide in (born_promoted, entry_of_another_rollout, ends_a_rollout_not_in_flight):
        with pytest.raises(IllegalTransition):
            birth(world, decide)
    assert (world.store.commits, len(world.publisher.sent)) == (commits, sent)
