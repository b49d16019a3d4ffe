"""Rollback on demand (topic `hekaton-rollback`): traffic returns to the stable or named revision, the rollout ends."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from events.errors import MalformedEvent
from events.operator import RollbackRequest, parse_rollback_request
from events.pubsub import PubSubMessage
from shared.deps import Deps
from shared.errors import PreconditionFailed, RetryableError
from shared.idempotency import MAX_KEY, request_id
from shared.model import Decision, RequestRecord, Rollout
from shared.phases import Outcome, Phase
from shared.rollback_target import TargetRefused, check_target, name_target
from shared.serving import STABLE_TAG, TrafficTarget
from shared.steps.engine import MAX_ATTEMPTS, end_service_pointer, transition
from shared.store import MUST_NOT_EXIST, Change

SOURCE = "rollback"
HISTORY_LIMIT = 10  # how far back a rollback looks for the previous stable revision and for itself
# How far back the records are read to tell whether a target revision served (and its image).
TARGET_HISTORY_LIMIT = 200


@dataclass
class RollbackReport:
    """What a rollback request did."""

    rollout_id: str
    target_revision: str
    ended_active: bool


def _record_id(service: str, message_id: str) -> str:
    """Deterministic per request message: the id of the record kept when no rollout was in flight."""
    return f"{service}-rollback-{hashlib.sha256(message_id.encode()).hexdigest()[:8]}"


def handle(deps: Deps, message: PubSubMessage) -> RollbackRequest | RollbackReport:
    """Apply one operator rollback request."""
    request = parse_rollback_request(message.data)
    request_key = request_id("pubsub", message.message_id)
    for _attempt in range(MAX_ATTEMPTS):
        now = deps.clock.now()
        service = deps.store.get_service(request.service)
        if service is None:
            raise MalformedEvent(f"rollback names unknown service {request.service!r}")
        # Checked before anything is touched: a redelivery, however late, must not end (or re-route)
        # a newer rollout. The record is created must-not-exist with the change, so racing copies
        # of one request cannot both apply.
        applied = deps.store.get_request(request_key)
        if applied is not None:
            return RollbackReport(
                str(applied.rollout_id),
                str(applied.result.get("target_revision")),
                ended_active=False,
            )
        record = service.value
        active = (
            deps.store.get_rollout(record.active_rollout_id) if record.active_rollout_id else None
        )
        active_rollout = active.value if active is not None and active.value.active else None
        # With nothing in flight, "roll back" means: back to the revision that was stable before the current one.
        history = (
            deps.store.list_rollouts(request.service, limit=HISTORY_LIMIT)
            if active_rollout is None
            else []
        )
        last_promoted = next((r for r in history if r.phase is Phase.PROMOTED), None)
        default_stable = (
            record.stable_revision
            if active_rollout
            else (last_promoted.stable_revision if last_promoted else None)
        )
        known = deps.store.list_rollouts(request.service, limit=TARGET_HISTORY_LIMIT)
        try:
            if request.revision:
                target = name_target(record, known, request.revision)
            elif default_stable or record.stable_revision:
                target = default_stable or record.stable_revision or ""
            else:
                raise TargetRefused(
                    f"service {request.service} has no stable revision to roll back to; "
                    "name one with 'revision'"
                )
            if active_rollout is None and target == record.stable_revision:
                raise TargetRefused(
                    f"service {request.service} already serves {target}, the revision it would "
                    "roll back to; name an older one with 'revision'"
                )
            checked = check_target(deps.serving, record, known, target)
        except TargetRefused as exc:
            raise MalformedEvent(f"rollback of {request.service} refused: {exc}") from None
        origin = checked.origin
        reason = f"{request.reason} (requested by {request.requested_by or 'operator'}; message {message.message_id}): traffic to {target}"
        deps.serving.set_traffic(
            record.namespace, request.service, [TrafficTarget(target, 100, STABLE_TAG)]
        )
        change = Change()
        if active_rollout is not None and active is not None:
            ended, decision = transition(
                active_rollout,
                Outcome.ROLLBACK_REQUESTED,
                now=now,
                reason=reason,
                cause=message.message_id,
                values={
                    "target_revision": target,
                    "traffic_percent_before": active_rollout.traffic_percent,
                },
                traffic_percent=0,
                stable_revision=target,
            )
            change.rollouts.append((ended, active.version))
            change.decisions.append((ended.id, decision))
            rid = ended.id
        else:
            rid = _record_id(request.service, message.message_id)
            record_rollout = Rollout(
                id=rid,
                service=request.service,
                namespace=record.namespace,
                image=origin.image if origin else "",
                tag=origin.tag if origin else None,
                digest=origin.digest if origin else "",
                revision=target,
                phase=Phase.ROLLED_BACK,
                created_at=now,
                updated_at=now,
                ended_at=now,
                reason=reason,
                stable_revision=target,  # where traffic went, as for a rollout ended by rollback
                cause=message.message_id,
                seq=1,
                traffic_percent=100,
                kind="rollback",
            )
            change.rollouts.append((record_rollout, MUST_NOT_EXIST))
            change.decisions.append(
                (
                    rid,
                    Decision(
                        id=f"0001-{Outcome.ROLLBACK_REQUESTED.value}",
                        seq=1,
                        at=now,
                        phase_from="",
                        phase_to=Phase.ROLLED_BACK.value,
                        outcome=Outcome.ROLLBACK_REQUESTED.value,
                        reason=reason,
                        values={
                            "target_revision": target,
                            "previous_stable_revision": record.stable_revision,
                        },
                        message_id=message.message_id,
                    ),
                )
            )
        updated = end_service_pointer(service, active_rollout, now) if active_rollout else None
        updated = (updated or record).evolve(stable_revision=target, updated_at=now)
        if target != record.stable_revision:
            updated = updated.evolve(
                stable_image=origin.image_ref if origin else None,
                stable_digest=origin.digest if origin else None,
            )
        change.services.append((updated, service.version))
        change.requests.append(
            RequestRecord(
                id=request_key,
                key=message.message_id[:MAX_KEY],
                command="rollback",
                service=request.service,
                at=now,
                status="applied",
                principal=request.requested_by or "operator",
                reason=request.reason,
                detail=reason,
                rollout_id=rid,
                result={"target_revision": target, "ended_active": active_rollout is not None},
            )
        )
        try:
            deps.store.commit(change)
        except PreconditionFailed:
            continue
        return RollbackReport(rid, target, ended_active=active_rollout is not None)
    raise RetryableError(
        f"rollback of {request.service}: still contended after {MAX_ATTEMPTS} attempts; will retry"
    )
