"""Operator commands through the engine: abort, promote, pause/resume, approve, delete; refusals; once only."""

from __future__ import annotations

from typing import Any

import pytest

from shared.commands import CommandRequest, CommandResult, Refused
from shared.phases import Phase
from shared.steps.command_acts import rollout_acts
from shared.steps.commands import run_command
from tests.fakes import Pipeline, World, digest_of

BAKE = 30.0


def command(world: World, name: str, key: str | None = None, **fields: Any) -> CommandResult:
    """Run one command as ann through the engine."""
    request = CommandRequest(
        command=name,
        principal="ann@example.com",
        key=key or f"{name}-1",
        origin="api",
        service=fields.pop("service", "iris"),
        reason=fields.pop("reason", "because"),
        **fields,
    )
    return run_command(world.deps, request, rollout_acts())


def shifting(**spec: Any) -> tuple[World, Pipeline]:
    """v1 stable, v2 baking at 10 % (bake 30 s)."""
    world = World.create()
    world.register(bake_seconds=BAKE, **spec)
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()
    world.push(pipeline, "v2")
    pipeline.run(until=lambda: _at(world, "v2", Phase.SHIFTING, 10))
    return world, pipeline


def _at(world: World, tag: str, phase: Phase, percent: int | None = None) -> bool:
    found = [r for r in world.rollouts() if r.digest == digest_of(tag)]
    return (
        bool(found)
        and found[0].phase is phase
        and (percent is None or found[0].traffic_percent == percent)
    )


def v2(world: World) -> Any:
    return world.only_rollout(digest_of("v2"))


def test_abort_returns_traffic_to_stable_now_and_records_who_and_why() -> None:
    world, pipeline = shifting()
    result = command(world, "abort", reason="p99 alarm")
    assert (result.status, result.phase) == ("applied", "ROLLED_BACK")
    assert world.traffic() == {world.revision("v1"): 100}
    last = world.store.decisions(v2(world).id)[-1]
    assert last.outcome == "abort_requested"
    assert last.values["requested_by"] == "ann@example.com"
    assert "ann@example.com" in last.reason and "p99 alarm" in last.reason
    pipeline.run()
    assert v2(world).phase is Phase.ROLLED_BACK


def test_promote_skips_the_remaining_steps() -> None:
    world, pipeline = shifting()
    result = command(world, "promote")
    assert result.phase == "PROMOTING"
    pipeline.run()
    assert v2(world).phase is Phase.PROMOTED
    assert world.traffic() == {world.revision("v2"): 100}
    outcomes = [d.outcome for d in world.store.decisions(v2(world).id)]
    assert "step_passed" not in outcomes and "promote_requested" in outcomes


def test_pause_holds_traffic_past_the_bake_and_resume_carries_on() -> None:
    world, pipeline = shifting()
    command(world, "pause", deadline_seconds=600)
    for _ in range(int(BAKE * 3 / 5)):
        world.clock.advance(5)
        pipeline.tick()
        pipeline.drain()
    assert v2(world).phase is Phase.PAUSED
    assert world.traffic() == {world.revision("v1"): 90, world.revision("v2"): 10}
    paused = v2(world)
    result = command(world, "resume")
    assert result.phase == "SHIFTING"
    resumed = v2(world)
    # The step's clock starts over at resume; the measured window (since the first step) stays.
    assert resumed.analysis["step_started_at"] == world.clock.now().isoformat()
    assert resumed.analysis["window_start"] == paused.analysis["window_start"]
    assert resumed.due_at is not None and resumed.due_at > world.clock.now()
    pipeline.run()
    assert v2(world).phase is Phase.PROMOTED


def test_a_pause_that_outlives_its_deadline_is_rolled_back_and_says_so() -> None:
    world, pipeline = shifting()
    command(world, "pause", deadline_seconds=60)
    pipeline.run()
    rollout = v2(world)
    assert rollout.phase is Phase.ROLLED_BACK
    assert "PAUSED did not finish by its deadline" in (rollout.reason or "")
    assert world.store.decisions(rollout.id)[-1].outcome == "pause_deadline_exceeded"
    assert world.traffic() == {world.revision("v1"): 100}


def test_the_approval_gate_waits_for_approve() -> None:
    world, pipeline = shifting(approval={"required": True, "deadline_seconds": 3600})
    pipeline.run(until=lambda: _at(world, "v2", Phase.AWAITING_APPROVAL))
    assert v2(world).phase is Phase.AWAITING_APPROVAL
    result = command(world, "approve")
    assert result.phase == "PROMOTING"
    pipeline.run()
    assert v2(world).phase is Phase.PROMOTED
    assert v2(world).approved_by == "ann@example.com"


def test_an_unapproved_rollout_is_rolled_back_at_the_gate_deadline() -> None:
    world, pipeline = shifting(approval={"required": True, "deadline_seconds": 120})
    pipeline.run()
    rollout = v2(world)
    assert rollout.phase is Phase.ROLLED_BACK
    assert world.store.decisions(rollout.id)[-1].outcome == "approval_deadline_exceeded"
    assert world.traffic() == {world.revision("v1"): 100}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resume", "resume is not possible while the rollout is SHIFTING; it applies to PAUSED"),
        ("approve", "approve is not possible while the rollout is SHIFTING"),
    ],
)
def test_an_illegal_command_is_refused_from_the_table_and_changes_nothing(
    name: str, expected: str
) -> None:
    world, _pipeline = shifting()
    before = (v2(world), world.traffic())
    with pytest.raises(Refused) as refused:
        command(world, name)
    assert refused.value.status == 409 and expected in refused.value.reason
    assert (v2(world), world.traffic()) == before
    # Recorded: the same request gets the same answer.
    with pytest.raises(Refused, match=expected):
        command(world, name)


def test_a_command_on_a_finished_rollout_names_its_phase() -> None:
    world, pipeline = shifting()
    pipeline.run()
    with pytest.raises(Refused) as refused:
        command(world, "resume", rollout_id=v2(world).id, service=None)
    assert "resume is not possible while the rollout is PROMOTED; it applies to PAUSED" in (
        refused.value.reason
    )


def test_unknown_service_and_rollout_are_404() -> None:
    world, _pipeline = shifting()
    with pytest.raises(Refused) as refused:
        command(world, "abort", service="nope")
    assert refused.value.status == 404
    with pytest.raises(Refused) as refused:
        command(world, "abort", rollout_id="../../etc", service=None, key="k2")
    assert refused.value.status == 404


def test_a_command_is_applied_once_whatever_the_redelivery() -> None:
    world, _pipeline = shifting()
    first = command(world, "pause", key="same")
    again = command(world, "pause", key="same")
    assert (first.status, again.status) == ("applied", "repeated")
    assert [d.outcome for d in world.store.decisions(v2(world).id)].count("pause_requested") == 1
    with pytest.raises(Refused, match="already used for another request"):
        command(world, "abort", key="same")
    assert v2(world).phase is Phase.PAUSED


def test_delete_ends_the_rollout_removes_the_service_and_keeps_history() -> None:
    world, pipeline = shifting()
    result = command(world, "delete")
    assert result.status == "applied"
    world.deps.serving.delete_service("models", "iris")
    assert v2(world).phase is Phase.DELETED
    assert world.serving.get_service("models", "iris") is None
    record = world.store.get_service("iris")
    assert record is not None and record.value.deleted_by == "ann@example.com"
    assert len(world.rollouts()) == 2  # history kept
    pipeline.run()  # queued steps are stale: nothing recreates the service
    assert world.serving.get_service("models", "iris") is None
    with pytest.raises(Refused, match="was deleted"):
        command(world, "abort", key="after-delete")
    # A push for a deleted service is ignored with the reason.
    world.push(pipeline, "v3")
    pipeline.run()
    assert any("was deleted" in e.reason for e in world.store.list_ignored())
