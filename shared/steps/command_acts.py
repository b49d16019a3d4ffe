"""What each operator command does to the rollout it acts on (each an edge of the transition table)."""

from __future__ import annotations

from typing import Any

from shared.commands import DEFAULT_PAUSE_SECONDS, MAX_PAUSE_SECONDS, Refused
from shared.phases import Outcome
from shared.steps.analyse import start_step
from shared.steps.commands import CommandAct, CommandContext, CommandPlan, ending_edge, simple_edge
from shared.steps.engine import later


def abort(ctx: CommandContext) -> CommandPlan:
    """Roll back now: stable takes all traffic, the rollout ends ROLLED_BACK."""
    assert ctx.rollout is not None
    stable = ctx.rollout.value.stable_revision
    detail = (
        f"aborted; traffic back on {stable}"
        if stable
        else "aborted; a first deploy has no stable revision, so the candidate keeps serving"
    )
    return ending_edge(ctx, Outcome.ABORT_REQUESTED, detail)


def promote(ctx: CommandContext) -> CommandPlan:
    """Skip the remaining steps: the promote step runs now (the spec's approval gate still applies)."""
    assert ctx.rollout is not None
    return simple_edge(
        ctx,
        Outcome.PROMOTE_REQUESTED,
        f"skipping the remaining steps; promoting {ctx.rollout.value.revision}",
    )


def pause(ctx: CommandContext) -> CommandPlan:
    """Freeze the rollout where it is, until resume, promote, abort or the pause's deadline."""
    seconds = ctx.request.deadline_seconds or DEFAULT_PAUSE_SECONDS
    if not 0 < seconds <= MAX_PAUSE_SECONDS:
        raise Refused("invalid", f"a pause lasts between 1 s and {MAX_PAUSE_SECONDS} s")
    deadline = later(ctx.now, seconds)
    return simple_edge(
        ctx,
        Outcome.PAUSE_REQUESTED,
        f"paused at {ctx.rollout.value.traffic_percent if ctx.rollout else 0}% until resumed; "
        f"rolled back if still paused at {deadline.isoformat()}",
        values={"deadline_seconds": seconds},
        deadline_at=deadline,
        due_at=deadline,
    )


def resume(ctx: CommandContext) -> CommandPlan:
    """Carry on from the paused step; its clock starts over (bake, evidence deadline), so the step is
    judged as if its weight were set now. The measured window stays: traffic flowed during the pause."""
    assert ctx.rollout is not None
    rollout, spec = ctx.rollout.value, ctx.spec
    bake = spec.bake_seconds if spec else 0.0
    updates: dict[str, Any] = {"due_at": ctx.now}
    if rollout.step_applied:
        analysis = spec.analysis if spec else None
        first_check = analysis.interval_seconds if analysis and analysis.enabled else bake
        updates.update(
            due_at=later(ctx.now, first_check),
            analysis=start_step(rollout, ctx.now).to_dict(),
        )
    return simple_edge(
        ctx,
        Outcome.RESUME_REQUESTED,
        f"resumed at step {rollout.step_index + 1} of {len(rollout.steps)}; "
        f"the step's clock starts over (bake {bake:g}s)",
        **updates,
    )


def approve(ctx: CommandContext) -> CommandPlan:
    """Pass the approval gate: the promote step runs now."""
    assert ctx.rollout is not None
    return simple_edge(
        ctx,
        Outcome.APPROVED,
        f"approved by {ctx.request.principal}; promoting {ctx.rollout.value.revision}",
        approved_by=ctx.request.principal,
    )


def rollout_acts() -> dict[str, CommandAct]:
    """Every command, by name (rollback and delete have modules of their own)."""
    from shared.steps import delete, rollback

    return {
        "abort": abort,
        "promote": promote,
        "pause": pause,
        "resume": resume,
        "approve": approve,
        "rollback": rollback.act,
        "delete": delete.act,
    }
