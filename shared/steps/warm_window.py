"""The end of a warm window: the previous stable revision loses its `previous` tag and its route.

At promotion the stable revision it replaced stays in the traffic block at 0 % (tag `previous`),
so Knative keeps it warm and a rollback to it is instant (shared/steps/promote.py). When the
window ends, the tick asks for its release as a command (`release_previous`), through the same
engine as an operator's: one preconditioned commit with the request record, keyed by service,
revision and window end, so a repeated tick applies it once and finds it done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.commands import CommandRequest, Refused
from shared.deps import Deps
from shared.logs import get_logger
from shared.steps.commands import CommandContext, CommandPlan, run_command
from shared.steps.traffic import resting_traffic
from shared.store import Change

COMMAND = "release_previous"
ORIGIN = "tick"
PRINCIPAL = "hekaton (warm window ended)"
# How many services one tick releases (the rest wait for the next tick).
RELEASE_BATCH = 50

log = get_logger("warm_window")


def act(ctx: CommandContext) -> CommandPlan:
    """Drop the previous revision from the traffic block and the service record, once its window ended."""
    record = ctx.service.value
    until = record.previous_warm_until
    if record.previous_revision is None or until is None:
        raise Refused("conflict", f"service {record.name} keeps no previous revision warm")
    if ctx.now < until:
        raise Refused(
            "conflict",
            f"{record.previous_revision} stays warm until {until.isoformat()}; not released yet",
        )
    released = record.evolve(previous_revision=None, previous_warm_until=None, updated_at=ctx.now)
    touched = False
    if ctx.rollout is None:
        # A rollout in flight owns the traffic block (and routes no previous revision): left alone.
        traffic = resting_traffic(released, ctx.now)
        if traffic:
            ctx.deps.serving.set_traffic(record.namespace, record.name, traffic)
            touched = True
    detail = (
        f"warm window of {record.previous_revision} ended at {until.isoformat()}: "
        f"no longer routed (tag previous removed); {record.stable_revision} serves 100%"
    )
    return CommandPlan(
        Change(services=[(released, ctx.service.version)]),
        detail,
        touched_traffic=touched,
        result={"released_revision": record.previous_revision},
    )


@dataclass
class Releases:
    """What one pass did."""

    released: list[str] = field(default_factory=list)  # services whose previous revision went


def release_ended_windows(deps: Deps) -> Releases:
    """Release the previous revision of every service whose warm window has ended."""
    now = deps.clock.now()
    report = Releases()
    for record in deps.store.services_warm_until(now, limit=RELEASE_BATCH):
        if record.previous_revision is None or record.previous_warm_until is None:
            continue
        request = CommandRequest(
            command=COMMAND,
            principal=PRINCIPAL,
            key=f"{record.name}/{record.previous_revision}/{record.previous_warm_until.isoformat()}",
            origin=ORIGIN,
            service=record.name,
            reason="the spec's scaling.keep_previous_warm_seconds passed",
        )
        try:
            result = run_command(deps, request, {COMMAND: act})
        except Refused as refused:  # moved meanwhile (a rollback, a new promotion): nothing to do
            log.info("warm window not released: %s", refused.reason, extra={"service": record.name})
            continue
        if result.status == "applied":
            report.released.append(record.name)
            log.info(result.detail, extra={"service": record.name})
    return report
