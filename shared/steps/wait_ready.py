"""Wait ready: check the revision's Ready condition once; re-check later via the tick, never by sleeping."""

from __future__ import annotations

from events.steps import StepEvent
from shared.deps import Deps
from shared.model import Rollout, ServiceRecord
from shared.phases import Outcome
from shared.steps.engine import Plan, later, transition
from shared.steps.failing import end_badly
from shared.store import Versioned


def act(
    deps: Deps, rollout: Rollout, service: Versioned[ServiceRecord] | None, event: StepEvent
) -> Plan | None:
    """Advance on Ready, fail on a Knative failure reason or the deadline, else schedule the next check."""
    now = deps.clock.now()
    health = deps.serving.revision_health(rollout.namespace, rollout.revision)
    values = {"ready": health.ready, "reason": health.reason, "message": health.message}
    if health.ready:
        ready, decision = transition(
            rollout,
            Outcome.READY,
            now=now,
            reason=f"revision {rollout.revision} is Ready",
            cause=event.cause,
            values=values,
        )
        return Plan(ready, decision)
    if health.ready is False:
        reason = f"revision {rollout.revision} failed: {health.reason}"
        if health.message:
            reason += f": {health.message}"
        return end_badly(
            deps,
            rollout,
            service,
            Outcome.REVISION_FAILED,
            reason,
            cause=event.cause,
            values=values,
        )
    deadline = rollout.ready_deadline_at
    if deadline is not None and now >= deadline:
        reason = f"revision {rollout.revision} not Ready by the readiness deadline ({deadline.isoformat()})"
        return end_badly(
            deps,
            rollout,
            service,
            Outcome.READY_DEADLINE,
            reason,
            cause=event.cause,
            values=values,
            thresholds={"ready_deadline_at": deadline.isoformat()},
        )
    if rollout.due_at is not None and rollout.due_at > now:
        return None  # an early duplicate: the scheduled check is still to come
    return Plan(rollout.evolve(due_at=later(now, deps.settings.ready_poll_seconds), updated_at=now))
