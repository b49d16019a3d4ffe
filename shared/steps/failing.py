"""Ending a rollout badly: traffic back on the stable revision, pointer cleared, reason logged."""

from __future__ import annotations

from typing import Any

from shared.phases import Outcome
from shared.steps.engine import Plan, StepContext, end_service_pointer, return_traffic


def end_badly(
    ctx: StepContext,
    outcome: Outcome,
    reason: str,
    *,
    values: dict[str, Any] | None = None,
    thresholds: dict[str, Any] | None = None,
    **updates: Any,
) -> Plan:
    """Transition to FAILED/ROLLED_BACK, return traffic to stable first, and clear the service pointer."""
    ended, decision = ctx.transition(
        outcome,
        reason=reason,
        values=values,
        thresholds=thresholds,
        traffic_percent=0,
        **updates,
    )
    touched, gone = return_traffic(ctx.deps, ended)
    if gone is not None:
        ended, decision = ctx.transition(
            outcome,
            reason=f"{reason}; {gone}",
            values=values,
            thresholds=thresholds,
            traffic_percent=0,
            **updates,
        )
    return Plan(
        ended,
        decision,
        service=end_service_pointer(ctx.service, ended, ctx.now),
        touched_traffic=touched,
    )
