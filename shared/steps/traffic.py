"""The traffic a rollout wants, as a pure function: every step applies it with absolute weights."""

from __future__ import annotations

from datetime import datetime

from shared.model import Rollout, ServiceRecord
from shared.phases import Phase
from shared.serving import CANDIDATE_TAG, PREVIOUS_TAG, STABLE_TAG, TrafficTarget

_RETURNED = frozenset({Phase.FAILED, Phase.ROLLED_BACK, Phase.SUPERSEDED})


def desired_traffic(rollout: Rollout) -> list[TrafficTarget]:
    """Traffic for a rollout in its current state ([] means: leave the Service's traffic as it is)."""
    candidate, stable = rollout.revision, rollout.stable_revision
    if rollout.phase is Phase.DELETED:
        return []  # the Knative Service is gone: there is no traffic block to write
    if rollout.phase is Phase.PROMOTED:
        promoted = [TrafficTarget(candidate, 100, STABLE_TAG)]
        if rollout.previous_warm_until is not None and stable and stable != candidate:
            # Routed at 0 %: Knative keeps it (with its min-scale) warm for an instant rollback.
            promoted.append(TrafficTarget(stable, 0, PREVIOUS_TAG))
        return promoted
    if rollout.phase in _RETURNED:
        # With no stable revision to return to (a failed first deploy) there is nothing better to route to.
        return [TrafficTarget(stable, 100, STABLE_TAG)] if stable else []
    if not stable:
        # First deploy: nothing else can take the traffic, Knative needs weights summing to 100.
        return [TrafficTarget(candidate, 100, CANDIDATE_TAG)]
    percent = max(0, min(100, rollout.traffic_percent))
    return [
        TrafficTarget(stable, 100 - percent, STABLE_TAG),
        TrafficTarget(candidate, percent, CANDIDATE_TAG),
    ]


def resting_traffic(record: ServiceRecord, now: datetime) -> list[TrafficTarget]:
    """Traffic of a service with no rollout in flight: its stable revision, plus the previous one at
    0 % while its warm window lasts ([]: nothing is stable yet)."""
    if not record.stable_revision:
        return []
    traffic = [TrafficTarget(record.stable_revision, 100, STABLE_TAG)]
    if (
        record.previous_revision
        and record.previous_revision != record.stable_revision
        and record.previous_warm_until is not None
        and now < record.previous_warm_until
    ):
        traffic.append(TrafficTarget(record.previous_revision, 0, PREVIOUS_TAG))
    return traffic
