"""The tick: re-emit steps that are due (ends of waits) and steps whose event was lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.deps import Deps
from shared.errors import PreconditionFailed
from shared.logs import get_logger
from shared.model import Rollout
from shared.notifications import republish_latest
from shared.steps.engine import publish_next
from shared.store import Change

SOURCE = "tick"
log = get_logger("sweep")


@dataclass
class SweepReport:
    """What one tick did."""

    emitted: list[str] = field(default_factory=list)
    checked: int = 0


def needs_emit(rollout: Rollout, grace_cutoff: datetime, now: datetime) -> bool:
    """Due, and not published since it became due (or published so long ago the event must be lost)."""
    if not rollout.active or rollout.due_at is None or rollout.due_at > now:
        return False
    if rollout.emitted_at is None or rollout.emitted_at < rollout.due_at:
        return True
    return rollout.emitted_at <= grace_cutoff


def sweep(deps: Deps, cause: str) -> SweepReport:
    """Publish the next step of every due rollout; mark it emitted with a precondition (no double emits)."""
    now = deps.clock.now()
    cutoff = now - timedelta(seconds=deps.settings.lost_event_grace_seconds)
    report = SweepReport()
    for loaded in deps.store.active_rollouts():
        report.checked += 1
        rollout = loaded.value
        if not needs_emit(rollout, cutoff, now):
            continue
        try:
            deps.store.commit(Change(rollouts=[(rollout.evolve(emitted_at=now), loaded.version)]))
        except PreconditionFailed:
            continue  # it moved meanwhile: whoever moved it published what comes next
        if rollout.emitted_at and rollout.due_at and rollout.emitted_at >= rollout.due_at:
            # Published once it was due, long ago: the event was lost, maybe by a crash right after
            # the commit, before its notification went out too. Same id: a duplicate is harmless.
            republish_latest(deps, rollout, source=SOURCE)
        publish_next(deps, rollout, cause=cause, source=SOURCE)
        report.emitted.append(rollout.id)
        log.info(
            "re-emitted due step",
            extra={"rollout": rollout.id, "service": rollout.service, "phase": rollout.phase.value},
        )
    return report
