"""Every committed decision published as a `dev.hekaton.rollout.transition.v1` CloudEvent.

Called by the engine after each successful commit, with the decisions that commit wrote. Delivery
is at-least-once with deterministic ids (`<rollout id>-<seq>`): a redelivered step that finds its
work done publishes nothing new, and anything published twice carries the same id and content. A
failed publish is logged and swallowed: a notification never fails, retries or delays a rollout.

Nothing is lost to a crash between the commit and the publish: the commit raises the rollout's
`notifications/{rollout}` marker's committed seq in the same write, a publish raises its notified
seq (preconditioned), and the tick's sweep (`catch_up`) publishes whatever a marker is behind on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from events.transitions import TransitionEvent, figures_excerpt
from shared.deps import Deps
from shared.errors import PreconditionFailed
from shared.logs import get_logger
from shared.model import Decision, NotifiedMarker, Rollout
from shared.store import Change, Versioned

log = get_logger("notifications")

# How many times a publisher re-reads a marker that moved under it before leaving it to the sweep.
ADVANCE_ATTEMPTS = 3
# How many lagging markers one tick catches up (the rest wait for the next tick).
CATCH_UP_BATCH = 50


def transition_event(rollout: Rollout, decision: Decision, *, source: str) -> TransitionEvent:
    """The notification for one decision of `rollout` (the same for the rollout as written or later)."""
    percent = (
        rollout.traffic_percent if decision.traffic_percent is None else decision.traffic_percent
    )
    return TransitionEvent(
        service=rollout.service,
        rollout_id=rollout.id,
        seq=decision.seq,
        phase_from=decision.phase_from,
        phase_to=decision.phase_to,
        outcome=decision.outcome,
        reason=decision.reason,
        at=decision.at.isoformat(),
        image=rollout.image_ref,
        revision=rollout.revision,
        traffic_percent=percent,
        message_id=decision.message_id,
        figures=figures_excerpt(decision.values, decision.thresholds),
        source=source,
    )


def publish_transitions(
    deps: Deps, written: Iterable[tuple[Rollout, Decision]], *, source: str
) -> list[str]:
    """Publish one event per (rollout as written, decision); failures are logged, never raised."""
    sent = []
    for rollout, decision in written:
        event = transition_event(rollout, decision, source=source)
        try:
            sent.append(deps.publisher.publish_transition(event))
        except Exception as exc:  # a notification must never fail the step
            log.warning(
                "transition event %s not published (the sweep re-publishes it): %s",
                event.id,
                type(exc).__name__,
                extra={"rollout": rollout.id, "service": rollout.service, "event": event.id},
            )
    return sent


def notify_committed(deps: Deps, change: Change, *, source: str) -> list[str]:
    """Publish the decisions a successful commit of `change` wrote, then advance their markers."""
    written = {rollout.id: rollout for rollout, _version in change.rollouts}
    sent: list[str] = []
    for rollout_id, rollout in written.items():
        decisions = sorted((d for rid, d in change.decisions if rid == rollout_id), key=_seq)
        if not decisions:
            continue
        published = publish_transitions(deps, [(rollout, d) for d in decisions], source=source)
        sent += published
        if len(published) == len(decisions):
            advance_marker(deps, rollout_id, first=decisions[0].seq, last=decisions[-1].seq)
    return sent


def _seq(decision: Decision) -> int:
    return decision.seq


def advance_marker(deps: Deps, rollout_id: str, *, first: int, last: int) -> bool:
    """Record decisions `first`..`last` as published, if everything before them was; never raises.

    A gap (an earlier publish was lost) is left for the sweep, which re-publishes from the marker.
    """
    try:
        for _ in range(ADVANCE_ATTEMPTS):
            loaded = deps.store.get_notified(rollout_id)
            if loaded is None or loaded.value.notified_seq >= last:
                return loaded is not None
            if loaded.value.notified_seq < first - 1:
                return False
            if _write_notified(deps, loaded, last):
                return True
    except Exception as exc:  # a notification must never fail the step
        log.warning(
            "notified marker of %s not advanced (the sweep re-publishes): %s",
            rollout_id,
            type(exc).__name__,
            extra={"rollout": rollout_id},
        )
    return False


def _write_notified(deps: Deps, loaded: Versioned[NotifiedMarker], seq: int) -> bool:
    """Raise the marker's notified seq to `seq` if it has not moved since it was read."""
    marker = loaded.value.evolve(notified_seq=seq, notified_at=deps.clock.now())
    try:
        deps.store.commit(Change(notified=[(marker, loaded.version)]))
    except PreconditionFailed:
        return False
    return True


@dataclass
class CatchUp:
    """What one catch-up pass did."""

    published: list[str] = field(default_factory=list)
    advanced: list[str] = field(default_factory=list)  # rollouts whose marker caught up


def catch_up(deps: Deps, *, cutoff: datetime, source: str) -> CatchUp:
    """Publish every decision a marker is behind on, committed before `cutoff`, and advance it.

    Decisions committed after the cutoff are left to the step that wrote them (it is publishing
    them right now); what it lost shows up here once the cutoff passes it.
    """
    report = CatchUp()
    for loaded in deps.store.notifications_behind(limit=CATCH_UP_BATCH):
        marker = loaded.value
        if marker.committed_at is None or marker.committed_at > cutoff:
            continue
        rollout = deps.store.get_rollout(marker.rollout_id)
        if rollout is None:
            continue
        missed = deps.store.decisions(marker.rollout_id, after_seq=marker.notified_seq)
        missed = [d for d in missed if d.seq <= marker.committed_seq]
        published = publish_transitions(deps, [(rollout.value, d) for d in missed], source=source)
        report.published += published
        if len(published) == len(missed) and _write_notified(deps, loaded, marker.committed_seq):
            report.advanced.append(marker.rollout_id)
            log.info(
                "caught up notifications",
                extra={"rollout": marker.rollout_id, "published": len(published)},
            )
    return report
