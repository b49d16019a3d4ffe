"""Promote: the candidate takes 100 % and becomes the service's stable revision."""

from __future__ import annotations

from shared.phases import Outcome
from shared.steps.engine import Plan, StepContext, apply_traffic


def act(ctx: StepContext) -> Plan:
    """Route 100 % to the candidate, then record it as stable in the same write as the PROMOTED phase."""
    rollout, service, now = ctx.rollout, ctx.service, ctx.now
    promoted, decision = ctx.transition(
        Outcome.PROMOTED,
        reason=f"{rollout.revision} promoted: serves 100% ({rollout.image_short})",
        values={"previous_stable_revision": rollout.stable_revision},
        traffic_percent=100,
    )
    touched = apply_traffic(ctx.deps, promoted)
    record = None
    if service is not None:
        record = service.value.evolve(
            stable_revision=rollout.revision,
            stable_image=rollout.image_ref,
            stable_digest=rollout.digest,
            active_rollout_id=None
            if service.value.active_rollout_id == rollout.id
            else service.value.active_rollout_id,
            updated_at=now,
        )
    return Plan(promoted, decision, service=record, touched_traffic=touched)
