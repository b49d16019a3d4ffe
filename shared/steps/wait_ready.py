"""Wait ready: check the revision's Ready condition once; re-check later via the tick, never by sleeping."""

from __future__ import annotations

from shared.phases import Outcome
from shared.steps.engine import Plan, StepContext, end_badly, later


def act(ctx: StepContext) -> Plan | None:
    """Advance on Ready, fail on a Knative failure reason or the deadline, else schedule the next check."""
    rollout, now = ctx.rollout, ctx.now
    health = ctx.deps.serving.revision_health(rollout.namespace, rollout.revision)
    values = {"ready": health.ready, "reason": health.reason, "message": health.message}
    if health.ready:
        ready, decision = ctx.transition(
            Outcome.READY, reason=f"revision {rollout.revision} is Ready", values=values
        )
        return Plan(ready, decision)
    if health.ready is False:
        reason = f"revision {rollout.revision} failed: {health.reason}"
        if health.message:
            reason += f": {health.message}"
        return end_badly(ctx, Outcome.REVISION_FAILED, reason, values=values)
    deadline = rollout.ready_deadline_at
    if deadline is not None and now >= deadline:
        reason = f"revision {rollout.revision} not Ready by the readiness deadline ({deadline.isoformat()})"
        return end_badly(
            ctx,
            Outcome.READY_DEADLINE,
            reason,
            values=values,
            thresholds={"ready_deadline_at": deadline.isoformat()},
        )
    if rollout.due_at is not None and rollout.due_at > now:
        return None  # an early duplicate: the scheduled check is still to come
    poll = ctx.deps.settings.ready_poll_seconds
    return Plan(rollout.evolve(due_at=later(now, poll), updated_at=now))
