"""Promote: the candidate takes 100 % and becomes the service's stable revision."""

from __future__ import annotations

from events.steps import StepEvent
from shared.deps import Deps
from shared.model import Rollout, ServiceRecord
from shared.phases import Outcome
from shared.steps.engine import Plan, apply_traffic, transition
from shared.store import Versioned


def act(
    deps: Deps, rollout: Rollout, service: Versioned[ServiceRecord] | None, event: StepEvent
) -> Plan:
    """Route 100 % to the candidate, then record it as stable in the same write as the PROMOTED phase."""
    now = deps.clock.now()
    promoted, decision = transition(
        rollout,
        Outcome.PROMOTED,
        now=now,
        reason=f"{rollout.revision} promoted: serves 100% ({rollout.image_short})",
        cause=event.cause,
        values={"previous_stable_revision": rollout.stable_revision},
        traffic_percent=100,
    )
    touched = apply_traffic(deps, promoted)
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
