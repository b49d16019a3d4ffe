"""Route repair: an idle service's traffic block is put back to what hekaton set when it ended.

A step that lost a race re-applies the winner's traffic (engine.reconcile_traffic), but a write
that was still in flight when its worker gave up (a slow Kubernetes answer past the client's
timeout, a crash after the request left) can land after the rollout ended, leaving e.g. a failed
candidate's tag routed at 0 %. Nothing else would ever look at that Service again, so the tick
checks every service that changed recently and has no rollout in flight, and rewrites a traffic
block that differs from its resting traffic. The write is conditional on the Service's
resourceVersion, and the service record is read again after the route: a rollout that starts
meanwhile (its ingest commits before its deploy writes) wins, and the next tick looks again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from shared.deps import Deps
from shared.errors import HekatonError, RetryableError
from shared.logs import get_logger
from shared.model import ServiceRecord
from shared.serving import TrafficTarget, same_routes
from shared.steps.traffic import resting_traffic

# How many recently changed services one tick checks (one Kubernetes read each).
REPAIR_BATCH = 100

log = get_logger("route_repair")


@dataclass
class Repairs:
    """What one pass did."""

    checked: int = 0
    repaired: list[str] = field(default_factory=list)


def _routes(traffic: list[TrafficTarget]) -> list[dict[str, object]]:
    return [t.as_dict() for t in traffic]


def repair_idle_routes(deps: Deps) -> Repairs:
    """Rewrite the traffic block of every recently changed idle service whose route drifted."""
    now = deps.clock.now()
    since = now - timedelta(seconds=deps.settings.route_repair_seconds)
    report = Repairs()
    found_right = deps.routes_found_right
    recent = deps.store.services_changed_since(since, limit=REPAIR_BATCH)
    for name in set(found_right) - {r.name for r in recent}:
        del found_right[name]  # out of the window: the cache stays as small as the batch
    recheck = timedelta(seconds=deps.settings.route_recheck_seconds)
    for record in recent:
        if record.active_rollout_id or record.deleted_at is not None:
            continue  # a rollout in flight owns the route; a deleted service has none
        wanted = resting_traffic(record, now)
        if not wanted:
            continue  # nothing stable yet (a failed first deploy): nothing better to route to
        last = found_right.get(record.name)
        if last is not None and last[0] == record.updated_at and now - last[1] < recheck:
            continue  # found right lately, and nothing hekaton knows of changed since
        report.checked += 1
        repaired = _repair(deps, record, wanted)
        if repaired is None:
            continue  # not known: look again at the next tick
        found_right[record.name] = (record.updated_at, now)
        if repaired:
            report.repaired.append(record.name)
    return report


def _repair(deps: Deps, record: ServiceRecord, wanted: list[TrafficTarget]) -> bool | None:
    """Rewrite one service's traffic block if it differs from `wanted`: True if rewritten, False
    if it was right, None if it could not tell or write (the next tick looks again)."""
    try:
        view = deps.serving.get_service(record.namespace, record.name)
        if view is None:
            return None  # no Service (deleted by hand?): nothing to route
        if same_routes(view.spec_traffic, wanted):
            return False
        # Read after the route: a rollout started since the list was read may have written it
        # (ingest commits before its deploy writes), and then that route is the one wanted.
        current = deps.store.get_service(record.name)
        if current is None or current.value != record:
            return None
        deps.serving.set_traffic(
            record.namespace, record.name, wanted, if_version=view.resource_version
        )
    except RetryableError as exc:
        # The cluster is unreachable, or something wrote since we read: the next tick looks again.
        log.info("route not repaired yet: %s", exc, extra={"service": record.name})
        return None
    except HekatonError as exc:
        # Refused (a right missing, the Service deleted meanwhile): this service is skipped, not
        # the tick, so every other service is still checked; the next tick tries this one again.
        log.error(
            "route of an idle service could not be repaired: %s; check hekaton's rights on the "
            "namespace and that the Knative Service exists (the tick retries for "
            "HEKATON_ROUTE_REPAIR_SECONDS after the service last changed)",
            exc,
            extra={"service": record.name, "wanted": _routes(wanted)},
        )
        return None
    log.warning(
        "route of an idle service differed from what hekaton set; rewritten",
        extra={
            "service": record.name,
            "found": _routes(view.spec_traffic),
            "wanted": _routes(wanted),
        },
    )
    return True
