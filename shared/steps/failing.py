"""Ending a rollout badly: traffic back on the stable revision, pointer cleared, reason logged."""

from __future__ import annotations

from typing import Any

from shared.deps import Deps
from shared.model import Rollout, ServiceRecord
from shared.phases import Outcome
from shared.steps.engine import Plan, apply_traffic, end_service_pointer, transition
from shared.store import Versioned


def end_badly(
    deps: Deps,
    rollout: Rollout,
    service: Versioned[ServiceRecord] | None,
    outcome: Outcome,
    reason: str,
    *,
    cause: str,
    values: dict[str, Any] | None = None,
    thresholds: dict[str, Any] | None = None,
) -> Plan:
    """Transition to FAILED/ROLLED_BACK, return traffic to stable first, and clear the service pointer."""
    now = deps.clock.now()
    ended, decision = transition(
        rollout,
        outcome,
        now=now,
        reason=reason,
        cause=cause,
        values=values,
        thresholds=thresholds,
        traffic_percent=0,
    )
    touched = apply_traffic(deps, ended)
    return Plan(
        ended, decision, service=end_service_pointer(service, ended, now), touched_traffic=touched
    )
