"""Shift: set the step's weight, bake until due, then judge the step and move on."""

from __future__ import annotations

from shared.phases import Outcome
from shared.steps.engine import Plan, StepContext, apply_traffic, later


def act(ctx: StepContext) -> Plan | None:
    """Apply steps[i] (absolute weights), or, once baked, advance to the next step or to promotion."""
    deps, rollout, spec, now = ctx.deps, ctx.rollout, ctx.spec, ctx.now
    bake = spec.bake_seconds if spec else 0.0
    percent = rollout.steps[rollout.step_index]
    if not rollout.step_applied:
        applied, decision = ctx.transition(
            Outcome.STEP_APPLIED,
            reason=f"candidate {rollout.revision} now takes {percent}% of traffic; baking {bake:g}s",
            values={"percent": percent, "stable_revision": rollout.stable_revision},
            thresholds={"bake_seconds": bake},
            traffic_percent=percent,
            step_applied=True,
            due_at=later(now, bake),
        )
        touched = apply_traffic(deps, applied)
        return Plan(applied, decision, touched_traffic=touched)
    if rollout.due_at is not None and rollout.due_at > now:
        return None  # still baking: the tick brings us back at due_at
    verdict = "judged on bake time only: metric analysis is not available yet"
    if rollout.step_index + 1 < len(rollout.steps):
        nxt = rollout.steps[rollout.step_index + 1]
        advanced, decision = ctx.transition(
            Outcome.STEP_PASSED,
            reason=f"step {percent}% passed ({verdict}); next {nxt}%",
            values={"percent": percent},
            step_index=rollout.step_index + 1,
            step_applied=False,
        )
    else:
        advanced, decision = ctx.transition(
            Outcome.LAST_STEP_PASSED,
            reason=f"last step {percent}% passed ({verdict}); promoting",
            values={"percent": percent},
        )
    return Plan(advanced, decision)
