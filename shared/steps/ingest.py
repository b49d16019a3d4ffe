"""Ingest: turn an Artifact Registry push into a rollout for every service that follows the repository."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

from events.artifact_registry import RegistryAction, RegistryEvent, parse_notification
from events.pubsub import PubSubMessage
from shared.deps import Deps
from shared.ignoring import record_ignored
from shared.model import Decision, Rollout, ServiceRecord
from shared.phases import INITIAL_PHASE, Outcome, Phase
from shared.spec import ServiceSpec
from shared.steps.engine import first_entry, publish_next, retry_on_conflict, transition
from shared.store import MUST_NOT_EXIST, Change

SOURCE = "ingest"
MAX_NAME = 63


@dataclass
class IngestReport:
    """What ingest did with one message."""

    started: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def revision_name(service: str, digest: str) -> str:
    """`<service>-<12 hex of the digest>`: deterministic, DNS-1035, at most 63 characters."""
    short = digest.split(":", 1)[-1][:12]
    return f"{service[: MAX_NAME - len(short) - 1]}-{short}"


def rollout_id(service: str, digest: str, message_id: str) -> str:
    """Deterministic per (service, push message): a redelivered push maps to the same rollout."""
    salt = hashlib.sha256(message_id.encode()).hexdigest()[:6]
    return f"{revision_name(service, digest)}-{salt}"


def parse_time(text: str | None, default: datetime) -> datetime:
    """RFC 3339 publish time (with Z or nanoseconds) -> datetime; default when absent or unreadable."""
    if not text:
        return default
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(cleaned)
    except ValueError:
        return default


def handle(deps: Deps, message: PubSubMessage) -> IngestReport:
    """Parse (MalformedEvent propagates to the caller, which records it) and start rollouts."""
    event = parse_notification(message.data)
    report = IngestReport()
    now = deps.clock.now()
    if event.action is RegistryAction.DELETE:
        _ignore(
            deps,
            message,
            f"DELETE of {event.image.display}: hekaton does not act on deletions",
            report,
        )
        return report
    if event.image.digest is None:
        _ignore(
            deps,
            message,
            f"INSERT of {event.image.display} without a digest: nothing immutable to deploy",
            report,
        )
        return report
    services = deps.store.services_for_repository(event.image.repository)
    if not services:
        _ignore(
            deps,
            message,
            f"no registered service follows repository {event.image.repository}",
            report,
        )
        return report
    pushed_at = parse_time(message.publish_time, now)
    for service in services:
        spec = ServiceSpec.model_validate(service.value.spec)
        if service.value.deleted_at is not None:
            _ignore(
                deps,
                message,
                f"service {spec.name} was deleted; register it again to deploy it",
                report,
                service=spec.name,
            )
            continue
        if not spec.accepts_tag(event.image.tag):
            _ignore(
                deps,
                message,
                f"tag {event.image.tag!r} does not match {spec.name}'s tag filter {spec.tag_filter!r}",
                report,
                service=spec.name,
            )
            continue
        start(deps, message, event, spec, pushed_at, report)
    return report


def start(
    deps: Deps,
    message: PubSubMessage,
    event: RegistryEvent,
    spec: ServiceSpec,
    pushed_at: datetime,
    report: IngestReport,
) -> None:
    """Start (or recognise, on redelivery) the rollout of `event`'s image for one service."""
    digest = event.image.digest or ""
    rid = rollout_id(spec.name, digest, message.message_id)

    def attempt() -> None:
        now = deps.clock.now()
        service = deps.store.get_service(spec.name)
        if service is None:
            _ignore(
                deps, message, f"service {spec.name} was unregistered", report, service=spec.name
            )
            return
        existing = deps.store.get_rollout(rid)
        if existing is not None:
            # A redelivered push: the rollout exists; make sure its first step was published.
            if existing.value.phase is INITIAL_PHASE:
                publish_next(deps, existing.value, cause=message.message_id, source=SOURCE)
            report.started.append(rid)
            return
        record = service.value
        if record.stable_digest == digest and not record.active_rollout_id:
            _ignore(
                deps,
                message,
                f"{event.image.display} is already the stable image of {spec.name}",
                report,
                service=spec.name,
            )
            return
        change = Change()
        active = (
            deps.store.get_rollout(record.active_rollout_id) if record.active_rollout_id else None
        )
        newer: Rollout | None = None
        if active is not None and active.value.active:
            if active.value.digest == digest:
                _ignore(
                    deps,
                    message,
                    f"{event.image.display} is already rolling out as {active.value.id}",
                    report,
                    service=spec.name,
                )
                return
            if _pushed_at(active.value) > pushed_at:
                newer = active.value
            else:
                superseded, decision = transition(
                    active.value,
                    Outcome.SUPERSEDED,
                    now=now,
                    reason=f"superseded by a newer image {event.image.display} (rollout {rid})",
                    cause=message.message_id,
                    values={"superseded_by": rid},
                )
                change.rollouts.append((superseded, active.version))
                change.decisions.append((superseded.id, decision))
        else:
            # A delayed notification must not replace an image pushed after it that already finished.
            newer = _newer_push(deps, spec.name, pushed_at)
        rollout = _new_rollout(rid, spec, record, event, message, now, pushed_at)
        if newer is not None:
            rollout = rollout.evolve(
                phase=Phase.SUPERSEDED,
                due_at=None,
                emitted_at=None,
                ended_at=now,
                reason=f"a newer image {newer.image_short} was already pushed (rollout {newer.id})",
            )
        else:
            rollout = rollout.evolve(emitted_at=now)
            change.services.append(
                (record.evolve(active_rollout_id=rid, updated_at=now), service.version)
            )
        change.rollouts.append((rollout, MUST_NOT_EXIST))
        change.decisions.append((rid, _created_decision(rollout, message.message_id, now)))
        deps.store.commit(change)  # PreconditionFailed: re-read and decide again
        if rollout.active:
            publish_next(deps, rollout, cause=message.message_id, source=SOURCE)
        report.started.append(rid)

    retry_on_conflict(attempt, what=f"ingest for {spec.name}")


def _pushed_at(rollout: Rollout) -> datetime:
    return rollout.pushed_at or rollout.created_at


def _newer_push(deps: Deps, service: str, pushed_at: datetime) -> Rollout | None:
    """A recent rollout of the service whose image was pushed after `pushed_at`, if any."""
    recent = deps.store.list_rollouts(service, limit=10)
    # Operator rollback records are not pushes; only pushes order pushes.
    return next((r for r in recent if r.kind == "push" and _pushed_at(r) > pushed_at), None)


def _new_rollout(
    rid: str,
    spec: ServiceSpec,
    record: ServiceRecord,
    event: RegistryEvent,
    message: PubSubMessage,
    now: datetime,
    pushed_at: datetime,
) -> Rollout:
    return Rollout(
        id=rid,
        service=spec.name,
        namespace=spec.namespace,
        image=event.image.repository,
        tag=event.image.tag,
        digest=event.image.digest or "",
        revision=revision_name(spec.name, event.image.digest or ""),
        phase=INITIAL_PHASE,
        created_at=now,
        updated_at=now,
        pushed_at=pushed_at,
        steps=list(spec.steps),
        stable_revision=record.stable_revision,
        due_at=now,
        cause=message.message_id,
        seq=1,
        spec=spec.to_document(),
    )


def _created_decision(rollout: Rollout, message_id: str, now: datetime) -> Decision:
    return first_entry(
        rollout,
        Outcome.CREATED,
        now=now,
        reason=rollout.reason
        or f"image {rollout.image_short} pushed; rollout to revision {rollout.revision} started",
        cause=message_id,
        values={
            "image": rollout.image_ref,
            "stable_revision": rollout.stable_revision,
            "steps": rollout.steps,
        },
    )


def _ignore(
    deps: Deps,
    message: PubSubMessage,
    reason: str,
    report: IngestReport,
    *,
    service: str | None = None,
) -> None:
    key = f"{message.message_id}-{service}" if service else message.message_id
    record_ignored(
        deps,
        function=SOURCE,
        message_id=key,
        reason=reason,
        excerpt=message.excerpt(),
        topic=message.topic,
        log=False,  # the function's per-message line lists `ignored` reasons
    )
    report.ignored.append(reason)
