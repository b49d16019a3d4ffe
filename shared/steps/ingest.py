"""Ingest: turn an Artifact Registry push into a rollout for every service that follows the repository."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from events.artifact_registry import RegistryAction, RegistryEvent, parse_notification
from events.pubsub import PubSubMessage
from shared.deps import Deps
from shared.ignoring import record_ignored
from shared.model import Decision, Rollout
from shared.phases import INITIAL_PHASE, Outcome, Phase
from shared.spec import ServiceSpec
from shared.steps.engine import BirthContext, BirthPlan, Ignored, run_birth

SOURCE = "ingest"
MAX_NAME = 63


@dataclass
class IngestReport:
    """What ingest did with one message."""

    started: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    service_of: dict[str, str] = field(default_factory=dict)  # started rollout id -> service


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
        parsed = datetime.fromisoformat(cleaned)
    except ValueError:
        return default
    # A time without an offset (never Pub/Sub's, maybe a hand-set attribute's) is taken as UTC:
    # a naive datetime cannot be compared with the others.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


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
    pushed_at = parse_time(message.first_published, now)
    for service in services:
        start(
            deps, message, event, ServiceSpec.model_validate(service.value.spec), pushed_at, report
        )
    return report


def start(
    deps: Deps,
    message: PubSubMessage,
    event: RegistryEvent,
    spec: ServiceSpec,
    pushed_at: datetime,
    report: IngestReport,
) -> None:
    """Start (or recognise, on redelivery) the rollout of `event`'s image for the service `spec` names.

    The engine's birth skeleton loads the service (as it is now: its spec decides), checks the push
    still applies and commits what `decide` planned; a push that starts nothing is recorded as ignored.
    """
    rid = rollout_id(spec.name, event.image.digest or "", message.message_id)
    outcome = run_birth(
        deps,
        service=spec.name,
        rollout_id=rid,
        cause=message.message_id,
        act=lambda ctx: decide(ctx, event, pushed_at),
        source=SOURCE,
    )
    if outcome.status == "ignored":
        _ignore(deps, message, outcome.detail, report, service=spec.name)
    else:
        report.started.append(rid)
        report.service_of[rid] = spec.name


def decide(ctx: BirthContext, event: RegistryEvent, pushed_at: datetime) -> BirthPlan | Ignored:
    """What a push means for one service: a new rollout (superseding the one in flight, or born
    SUPERSEDED when a newer image was already pushed), or nothing, with the reason."""
    record = ctx.service.value
    spec = ServiceSpec.model_validate(record.spec)
    image, digest = event.image, event.image.digest or ""
    if not spec.accepts_tag(image.tag):
        return Ignored(
            f"tag {image.tag!r} does not match {spec.name}'s tag filter {spec.tag_filter!r}"
        )
    if record.stable_digest == digest and not record.active_rollout_id:
        return Ignored(f"{image.display} is already the stable image of {spec.name}")
    active = ctx.active.value if ctx.active is not None else None
    if active is not None and active.digest == digest:
        return Ignored(f"{image.display} is already rolling out as {active.id}")
    if active is not None:
        newer = active if _pushed_at(active) > pushed_at else None
    else:
        # A delayed notification must not replace an image pushed after it that already finished.
        # Operator rollback records are not pushes; only pushes order pushes.
        newer = next(
            (r for r in ctx.recent if r.kind == "push" and _pushed_at(r) > pushed_at), None
        )
    rollout = _new_rollout(ctx, spec, event, pushed_at)
    if newer is not None:
        born_ended = rollout.evolve(
            phase=Phase.SUPERSEDED,
            due_at=None,
            ended_at=ctx.now,
            reason=f"a newer image {newer.image_short} was already pushed (rollout {newer.id})",
        )
        return BirthPlan(born_ended, _created_decision(ctx, born_ended))
    ended = None
    if active is not None:
        ended = ctx.end_active(
            Outcome.SUPERSEDED,
            reason=f"superseded by a newer image {image.display} (rollout {rollout.id})",
            values={"superseded_by": rollout.id},
        )
    return BirthPlan(
        rollout,
        _created_decision(ctx, rollout),
        ended=ended,
        # The new rollout owns the traffic block from its deploy on (which routes no previous
        # revision): a warm window still open ends here.
        service=record.evolve(
            active_rollout_id=rollout.id,
            previous_revision=None,
            previous_warm_until=None,
            updated_at=ctx.now,
        ),
    )


def _pushed_at(rollout: Rollout) -> datetime:
    return rollout.pushed_at or rollout.created_at


def _new_rollout(
    ctx: BirthContext, spec: ServiceSpec, event: RegistryEvent, pushed_at: datetime
) -> Rollout:
    digest = event.image.digest or ""
    return Rollout(
        id=ctx.rollout_id,
        service=spec.name,
        namespace=spec.namespace,
        image=event.image.repository,
        tag=event.image.tag,
        digest=digest,
        revision=revision_name(spec.name, digest),
        phase=INITIAL_PHASE,
        created_at=ctx.now,
        updated_at=ctx.now,
        pushed_at=pushed_at,
        steps=list(spec.steps),
        stable_revision=ctx.service.value.stable_revision,
        due_at=ctx.now,
        cause=ctx.cause,
        seq=1,
        spec=spec.to_document(),
    )


def _created_decision(ctx: BirthContext, rollout: Rollout) -> Decision:
    return ctx.first_entry(
        rollout,
        Outcome.CREATED,
        reason=rollout.reason
        or f"image {rollout.image_short} pushed; rollout to revision {rollout.revision} started",
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
