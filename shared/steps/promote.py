"""Promote: the candidate takes 100 % and becomes the service's stable revision."""

from __future__ import annotations

from shared.phases import Outcome
from shared.steps.engine import Plan, StepContext, apply_traffic, later


def act(ctx: StepContext) -> Plan:
    """Route 100 % to the candidate, then record it as stable in the same write as the PROMOTED phase."""
    rollout, service, now = ctx.rollout, ctx.service, ctx.now
    gate = ctx.spec.approval if ctx.spec else None
    # A first deploy already serves everything (nothing else could): the gate protects a stable one.
    gated = gate is not None and gate.required and rollout.stable_revision is not None
    if gate is not None and gated and rollout.approved_by is None:
        # The spec's manual gate: wait (no instance held) for `approve`, or roll back at its deadline.
        deadline = later(now, gate.deadline_seconds)
        held, decision = ctx.transition(
            Outcome.APPROVAL_REQUIRED,
            reason=f"{rollout.revision} passed every step; promotion waits for approval "
            f"(`hekaton approve {rollout.service}`) until {deadline.isoformat()}, "
            "then it is rolled back",
            thresholds={"approval_deadline_seconds": gate.deadline_seconds},
            deadline_at=deadline,
            due_at=deadline,
        )
        return Plan(held, decision)
    previous = rollout.stable_revision if rollout.stable_revision != rollout.revision else None
    warm = ctx.spec.scaling.warm_seconds if ctx.spec and previous else 0
    warm_until = later(now, warm) if warm else None
    # The reason says how long; the end time is in the values (a reason reads the same in any run).
    kept = (
        f"; {previous} stays routed at 0% (tag previous) and warm for {warm}s, for an instant "
        "rollback"
        if warm_until
        else ""
    )
    values: dict[str, object] = {"previous_stable_revision": rollout.stable_revision}
    if warm_until:
        values["previous_warm_until"] = warm_until.isoformat()
    promoted, decision = ctx.transition(
        Outcome.PROMOTED,
        reason=f"{rollout.revision} promoted: serves 100% ({rollout.image_short}){kept}",
        values=values,
        thresholds={"keep_previous_warm_seconds": warm} if previous else None,
        traffic_percent=100,
        previous_warm_until=warm_until,
    )
    touched = apply_traffic(ctx.deps, promoted)
    record = None
    if service is not None:
        record = service.value.evolve(
            stable_revision=rollout.revision,
            stable_image=rollout.image_ref,
            stable_digest=rollout.digest,
            previous_revision=previous if warm_until else None,
            previous_warm_until=warm_until,
            active_rollout_id=None
            if service.value.active_rollout_id == rollout.id
            else service.value.active_rollout_id,
            updated_at=now,
        )
    return Plan(promoted, decision, service=record, touched_traffic=touched)
