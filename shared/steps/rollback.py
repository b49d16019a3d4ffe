"""Rollback: traffic returns to the stable (or a named, checked) revision and the active rollout ends.

One command of the control path (`steps.commands`); requests arrive through the control API or on
topic `hekaton-rollback` (other systems), and both run the same act.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from events.errors import MalformedEvent
from events.operator import parse_rollback_request
from events.pubsub import PubSubMessage
from shared.commands import CommandRequest, Refused, bounded
from shared.deps import Deps
from shared.errors import GoneFromCluster, HekatonError
from shared.model import Rollout, ServiceRecord
from shared.phases import Outcome, Phase
from shared.rollback_target import TargetRefused, check_target, name_target
from shared.serving import STABLE_TAG, TrafficTarget, same_routes
from shared.steps.commands import CommandContext, CommandPlan, run_command
from shared.steps.engine import first_entry
from shared.steps.traffic import resting_traffic
from shared.store import MUST_NOT_EXIST, Change

SOURCE = "rollback"
# How far back the records are read for the previous stable revision, and to tell whether a
# target revision served (and which image it runs).
TARGET_HISTORY_LIMIT = 200


@dataclass
class RollbackReport:
    """What a rollback request did."""

    rollout_id: str
    target_revision: str
    ended_active: bool


def _record_id(service: str, key: str) -> str:
    """Deterministic per request: the id of the record kept when no rollout was in flight."""
    return f"{service}-rollback-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _target(ctx: CommandContext, known: list[Rollout]) -> str:
    request, record = ctx.request, ctx.service.value
    if request.revision:
        return name_target(record, known, request.revision)
    if ctx.rollout is not None:
        default = record.stable_revision
    else:
        # With nothing in flight, "roll back" means: back to the revision stable before the current one.
        last_promoted = next((r for r in known if r.phase is Phase.PROMOTED), None)
        default = (last_promoted.stable_revision if last_promoted else None) or (
            record.stable_revision
        )
    if not default:
        raise TargetRefused(
            f"service {record.name} has no stable revision to roll back to; name one with 'revision'"
        )
    return default


def _routed_at_rest(ctx: CommandContext, record: ServiceRecord) -> bool:
    """Whether the cluster routes the service as its record says it rests; when not (a return to
    stable the cluster once refused), a rollback to the stable revision is the repair."""
    view = ctx.deps.serving.get_service(record.namespace, record.name)
    return view is None or same_routes(view.spec_traffic, resting_traffic(record, ctx.now))


def _if_gone(ctx: CommandContext, record: ServiceRecord) -> str:
    """What to do instead when the Knative Service itself was deleted behind hekaton's back."""
    try:
        if ctx.deps.serving.get_service(record.namespace, record.name) is not None:
            return ""
    except HekatonError:
        return ""  # the cluster cannot tell now: the refusal stands on its own
    where = f"the Knative Service {record.namespace}/{record.name} is not in the cluster"
    if ctx.rollout is not None:
        return f"; {where}, so there is no traffic to move: `hekaton abort {record.name}` ends its rollout"
    return f"; {where}: push a new image to deploy it again"


def act(ctx: CommandContext) -> CommandPlan:
    """Route 100 % to the checked target, end the active rollout (or keep a record), all in one write."""
    record = ctx.service.value
    active = ctx.rollout.value if ctx.rollout is not None else None
    known = ctx.deps.store.list_rollouts(record.name, limit=TARGET_HISTORY_LIMIT)
    try:
        target = _target(ctx, known)
        if active is None and target == record.stable_revision and _routed_at_rest(ctx, record):
            raise Refused(
                "conflict",
                f"service {record.name} already serves {target}, the revision it would roll back "
                "to; name an older one with 'revision'",
            )
        origin = check_target(ctx.deps.serving, record, known, target).origin
        reason = ctx.reason(f"traffic to {target}")
        ctx.deps.serving.set_traffic(
            record.namespace, record.name, [TrafficTarget(target, 100, STABLE_TAG)]
        )
    except (TargetRefused, GoneFromCluster) as exc:
        raise Refused(
            "invalid", f"rollback of {record.name} refused: {exc}{_if_gone(ctx, record)}"
        ) from None
    change = Change()
    values = {**ctx.who(), "target_revision": target}
    if active is not None and ctx.rollout is not None:
        ended, decision = ctx.transition(
            Outcome.ROLLBACK_REQUESTED,
            what=f"traffic to {target}",
            values={**values, "traffic_percent_before": active.traffic_percent},
            traffic_percent=0,
            stable_revision=target,
        )
        change.rollouts.append((ended, ctx.rollout.version))
        change.decisions.append((ended.id, decision))
        kept = ended
    else:
        kept = _record(ctx, record, target, origin, reason)
        change.rollouts.append((kept, MUST_NOT_EXIST))
        entry = first_entry(
            kept,
            Outcome.ROLLBACK_REQUESTED,
            now=ctx.now,
            reason=reason,
            cause=ctx.request.key,
            values={**values, "previous_stable_revision": record.stable_revision},
        )
        change.decisions.append((kept.id, entry))
    # Traffic is all on the target now: a warm previous revision is released with its tag.
    updated = record.evolve(
        stable_revision=target, previous_revision=None, previous_warm_until=None, updated_at=ctx.now
    )
    if active is not None and record.active_rollout_id == active.id:
        updated = updated.evolve(active_rollout_id=None)
    if target != record.stable_revision:
        updated = updated.evolve(
            stable_image=origin.image_ref if origin else None,
            stable_digest=origin.digest if origin else None,
        )
    change.services.append((updated, ctx.service.version))
    return CommandPlan(
        change,
        reason,
        rollout=kept,
        touched_traffic=True,
        result={"target_revision": target, "ended_active": active is not None},
    )


def _record(
    ctx: CommandContext,
    record: ServiceRecord,
    target: str,
    origin: Rollout | None,
    reason: str,
) -> Rollout:
    """The rollout-shaped record of a rollback with nothing in flight (born ROLLED_BACK)."""
    return Rollout(
        id=_record_id(record.name, ctx.request.key),
        service=record.name,
        namespace=record.namespace,
        image=origin.image if origin else "",
        tag=origin.tag if origin else None,
        digest=origin.digest if origin else "",
        revision=target,
        phase=Phase.ROLLED_BACK,
        created_at=ctx.now,
        updated_at=ctx.now,
        ended_at=ctx.now,
        reason=reason,
        stable_revision=target,  # where traffic went, as for a rollout ended by rollback
        cause=ctx.request.key,
        seq=1,
        traffic_percent=100,
        kind="rollback",
    )


def handle(deps: Deps, message: PubSubMessage) -> RollbackReport:
    """Apply one rollback request from topic `hekaton-rollback` (refusals are recorded and acked)."""
    from shared.steps.command_acts import rollout_acts

    request = parse_rollback_request(message.data)
    # Pub/Sub carries no verified identity: the topic is who asked; the body's name is a claim.
    claimed = f" for {bounded(request.requested_by, 100)}" if request.requested_by else ""
    command = CommandRequest(
        command="rollback",
        principal=f"topic {message.topic or SOURCE}{claimed}",
        key=message.message_id,
        origin="pubsub",
        service=request.service,
        reason=request.reason,
        revision=request.revision,
    )
    try:
        result = run_command(deps, command, rollout_acts())
    except Refused as refused:
        if refused.kind == "not_found" and "is not registered" in refused.reason:
            raise MalformedEvent(f"rollback names unknown service {request.service!r}") from None
        raise MalformedEvent(refused.reason) from None
    return RollbackReport(
        str(result.rollout_id),
        str(result.result.get("target_revision")),
        ended_active=result.status == "applied" and bool(result.result.get("ended_active")),
    )
