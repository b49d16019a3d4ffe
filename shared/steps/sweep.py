"""The tick: re-emit steps that are due (ends of waits) and steps whose event was lost, and publish
the notifications a crash between a commit and its publish lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.deps import Deps
from shared.errors import PreconditionFailed
from shared.logs import get_logger
from shared.model import Rollout
from shared.notifications import catch_up
from shared.steps.engine import publish_next
from shared.steps.route_repair import repair_idle_routes
from shared.steps.warm_window import release_ended_windows
from shared.store import Change

SOURCE = "tick"
log = get_logger("sweep")


@dataclass
class SweepReport:
    """What one tick did."""

    emitted: list[str] = field(default_factory=list)
    checked: int = 0
    notified: list[str] = field(default_factory=list)  # ids of transition events re-published
    released: list[str] = field(default_factory=list)  # services whose warm window ended
    repaired: list[str] = field(default_factory=list)  # idle services whose route was rewritten


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
        publish_next(deps, rollout, cause=cause, source=SOURCE)
        report.emitted.append(rollout.id)
        log.info(
            "re-emitted due step",
            extra={"rollout": rollout.id, "service": rollout.service, "phase": rollout.phase.value},
        )
    # Ended rollouts too: a crash right after a PROMOTED or ROLLED_BACK commit loses its event.
    report.notified = catch_up(deps, cutoff=cutoff, source=SOURCE).published
    report.released = release_ended_windows(deps).released
    # After the releases: a window that ended this tick is resting traffic without `previous` now.
    report.repaired = repair_idle_routes(deps).repaired
    return report
