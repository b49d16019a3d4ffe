"""Every committed decision published as a `dev.hekaton.rollout.transition.v1` CloudEvent.

Called by the engine after each successful commit, with the decisions that commit wrote. Delivery
is at-least-once with deterministic ids (`<rollout id>-<seq>`): a redelivered step that finds its
work done publishes nothing new, and anything published twice carries the same id. A failed
publish is logged and swallowed: a notification never fails, retries or delays a rollout step. A
crash (or a failed publish) between the commit and the publish is caught up by the sweep when it
re-emits the lost step of that rollout (`republish_latest`).
"""

from __future__ import annotations

from collections.abc import Iterable

from events.transitions import TransitionEvent, figures_excerpt
from shared.deps import Deps
from shared.logs import get_logger
from shared.model import Decision, Rollout
from shared.store import Change

log = get_logger("notifications")


def transition_event(rollout: Rollout, decision: Decision, *, source: str) -> TransitionEvent:
    """The notification for one decision of `rollout` (the rollout as that commit wrote it)."""
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
        traffic_percent=rollout.traffic_percent,
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


def republish_latest(deps: Deps, rollout: Rollout, *, source: str) -> list[str]:
    """Publish again the rollout's latest decision (same id): what a crash after its commit lost."""
    latest = deps.store.decisions(rollout.id, after_seq=rollout.seq - 1)
    return publish_transitions(
        deps, [(rollout, d) for d in latest if d.seq == rollout.seq], source=source
    )


def notify_committed(deps: Deps, change: Change, *, source: str) -> list[str]:
    """Publish the decisions a successful commit of `change` wrote, each with its rollout as written."""
    written = {rollout.id: rollout for rollout, _version in change.rollouts}
    return publish_transitions(
        deps,
        [(written[rid], d) for rid, d in change.decisions if rid in written],
        source=source,
    )
