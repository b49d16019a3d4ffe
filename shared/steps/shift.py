"""Shift: set the step's weight, bake until due, then judge the step and move on."""

from __future__ import annotations

from events.steps import StepEvent
from shared.deps import Deps
from shared.model import Rollout, ServiceRecord
from shared.phases import Outcome
from shared.spec import ServiceSpec
from shared.steps.engine import Plan, apply_traffic, later, transition
from shared.store import Versioned


def act(
    deps: Deps, rollout: Rollout, service: Versioned[ServiceRecord] | None, event: StepEvent
) -> Plan | None:
    """Apply steps[i] (absolute weights), or, once baked, advance to the next step or to promotion."""
    now = deps.clock.now()
    spec = ServiceSpec.model_validate(service.value.spec) if service else None
    bake = spec.bake_seconds if spec else 0.0
    percent = rollout.steps[rollout.step_index]
    if not rollout.step_applied:
        applied, decision = transition(
            rollout,
            Outcome.STEP_APPLIED,
            now=now,
            reason=f"candidate {rollout.revision} now takes {percent}% of traffic; baking {bake:g}s",
            cause=event.cause,
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
        advanced, decision = transition(
            rollout,
            Outcome.STEP_PASSED,
            now=now,
            reason=f"step {percent}% passed ({verdict}); next {nxt}%",
            cause=event.cause,
            values={"percent": percent},
            step_index=rollout.step_index + 1,
            step_applied=False,
        )
    else:
        advanced, decision = transition(
            rollout,
            Outcome.LAST_STEP_PASSED,
            now=now,
            reason=f"last step {percent}% passed ({verdict}); promoting",
            cause=event.cause,
            values={"percent": percent},
        )
    return Plan(advanced, decision)
