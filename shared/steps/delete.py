"""Deleting a service: its Knative Service (and Istio policies hekaton made) go, its history stays."""

from __future__ import annotations

from shared.commands import Refused
from shared.phases import Outcome
from shared.steps.commands import CommandContext, CommandPlan
from shared.store import Change


def act(ctx: CommandContext) -> CommandPlan:
    """End the active rollout (DELETED), mark the service deleted; the cluster objects go after the write."""
    record = ctx.service.value
    if record.deleted_at is not None:
        raise Refused("not_found", f"service {record.name} was already deleted")
    change = Change()
    ended = None
    if ctx.rollout is not None:
        ended, decision = ctx.transition(Outcome.SERVICE_DELETED, traffic_percent=0)
        change.rollouts.append((ended, ctx.rollout.version))
        change.decisions.append((ended.id, decision))
    change.services.append(
        (
            record.evolve(
                deleted_at=ctx.now,
                deleted_by=ctx.request.principal,
                active_rollout_id=None,
                # Its revisions go with the Knative Service: no warm window left to release.
                previous_revision=None,
                previous_warm_until=None,
                updated_at=ctx.now,
            ),
            ctx.service.version,
        )
    )
    detail = f"service {record.name} deleted"
    if ended is not None:
        detail += f"; its rollout {ended.id} ended DELETED"
    return CommandPlan(
        change,
        detail,
        rollout=ended,
        result={"namespace": record.namespace, "ended_rollout": ended.id if ended else None},
    )
