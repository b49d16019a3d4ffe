"""The shared skeleton of every step: load, check the event applies, act, write once, publish next."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from events.steps import StepEvent
from shared import crashpoints
from shared.commands import bounded
from shared.deps import Deps
from shared.errors import GoneFromCluster, PermanentError
from shared.logs import get_logger
from shared.model import Decision, Rollout, ServiceRecord
from shared.notifications import notify_committed
from shared.phases import (
    DEADLINE_OUTCOMES,
    HELD_PHASES,
    IllegalTransition,
    Outcome,
    Phase,
    birth_phase,
    next_phase,
)
from shared.retrying import MAX_ATTEMPTS, retry_on_conflict
from shared.spec import ServiceSpec
from shared.steps.traffic import desired_traffic, resting_traffic
from shared.store import MUST_NOT_EXIST, Change, Versioned
from shared.timers.protocol import Timer

log = get_logger("engine")

__all__ = [
    "MAX_ATTEMPTS",
    "Act",
    "BirthAct",
    "BirthContext",
    "BirthPlan",
    "Ignored",
    "Plan",
    "StepContext",
    "retry_on_conflict",
    "run_birth",
    "run_step",
]


@dataclass
class Plan:
    """What a step decided: the rollout's next state, its log entry, and any service change."""

    rollout: Rollout
    decision: Decision | None = None
    service: ServiceRecord | None = None
    touched_traffic: bool = False


@dataclass
class StepReport:
    """What happened to one event (returned for logs and tests)."""

    # "applied", "waiting", "stale", "unknown-rollout"; births: "applied", "repeated", "ignored"
    status: str
    rollout_id: str
    phase: str | None = None
    detail: str = ""
    published: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StepContext:
    """Everything a step decides from, built once per attempt by the engine."""

    deps: Deps
    rollout: Rollout
    service: Versioned[ServiceRecord] | None  # None: the service was unregistered meanwhile
    spec: (
        ServiceSpec | None
    )  # the spec the rollout started with (or the service's, for old records)
    event: StepEvent
    now: datetime

    def transition(
        self,
        outcome: Outcome,
        *,
        reason: str,
        values: dict[str, Any] | None = None,
        thresholds: dict[str, Any] | None = None,
        rollout: Rollout | None = None,
        **updates: Any,
    ) -> tuple[Rollout, Decision]:
        """`transition` of this context's rollout (or of `rollout`), at `now`, caused by the event."""
        return transition(
            rollout or self.rollout,
            outcome,
            now=self.now,
            reason=reason,
            cause=self.event.cause,
            values=values,
            thresholds=thresholds,
            **updates,
        )


Act = Callable[[StepContext], Plan | None]


def rollout_spec(rollout: Rollout, service: Versioned[ServiceRecord] | None) -> ServiceSpec | None:
    """The spec a rollout is judged by: its snapshot from ingest, else the service's current one."""
    document = rollout.spec or (service.value.spec if service is not None else None)
    if not document:
        return None
    return ServiceSpec.model_validate(document)


def transition(
    rollout: Rollout,
    outcome: Outcome,
    *,
    now: datetime,
    reason: str,
    cause: str,
    values: dict[str, Any] | None = None,
    thresholds: dict[str, Any] | None = None,
    **updates: Any,
) -> tuple[Rollout, Decision]:
    """Move a rollout along the table and write the matching, deterministically named log entry."""
    target = next_phase(rollout.phase, outcome)
    seq = rollout.seq + 1
    # A phase's own deadline ends with the phase; the step entering a phase with one sets it anew.
    fields: dict[str, Any] = {
        "phase": target,
        "seq": seq,
        "updated_at": now,
        "due_at": now,
        "deadline_at": None,
    }
    if target.terminal:
        fields.update(reason=reason, ended_at=now, due_at=None)
    fields.update(updates)
    moved = rollout.evolve(**fields)
    decision = Decision(
        id=f"{seq:04d}-{outcome.value}",
        seq=seq,
        at=now,
        phase_from=rollout.phase.value,
        phase_to=target.value,
        outcome=outcome.value,
        reason=reason,
        step_index=rollout.step_index,
        values=values or {},
        thresholds=thresholds or {},
        message_id=cause,
        traffic_percent=moved.traffic_percent,
    )
    return moved, decision


def first_entry(
    rollout: Rollout,
    outcome: Outcome,
    *,
    now: datetime,
    reason: str,
    cause: str,
    values: dict[str, Any] | None = None,
) -> Decision:
    """The first log entry of a new rollout (seq 1), checked against the table's births."""
    birth_phase(outcome, rollout.phase)
    return Decision(
        id=f"0001-{outcome.value}",
        seq=1,
        at=now,
        phase_from="",
        phase_to=rollout.phase.value,
        outcome=outcome.value,
        reason=reason,
        values=values or {},
        message_id=cause,
        traffic_percent=rollout.traffic_percent,
    )


def event_applies(rollout: Rollout, event: StepEvent) -> str | None:
    """Why the event no longer applies (None when it does): duplicates and stragglers are dropped here."""
    if rollout.phase.terminal:
        return f"rollout already ended {rollout.phase.value}"
    if rollout.phase.value != event.phase:
        return f"rollout is {rollout.phase.value}, event was for {event.phase}"
    if rollout.step_index != event.step_index:
        return f"rollout is at step {rollout.step_index}, event was for step {event.step_index}"
    if rollout.phase.step is not event.type:
        return f"{event.type.value} does not advance a rollout in {rollout.phase.value}"
    return None


@dataclass
class _Attempts:
    """What one worker did across its attempts at one event (a lost write race tries again)."""

    count: int = 0
    touched_traffic: bool = False
    context: StepContext | None = None  # what the last plan was made from
    plan: Plan | None = None


def run_step(deps: Deps, event: StepEvent, act: Act, *, source: str) -> StepReport:
    """Apply `act` to the rollout named by the event, under at-least-once delivery."""
    done = _Attempts()

    def attempt() -> StepReport:
        done.count += 1
        loaded = deps.store.get_rollout(event.rollout_id)
        if loaded is None:
            return StepReport("unknown-rollout", event.rollout_id, detail="no such rollout")
        rollout = loaded.value
        earlier, planned = done.context, done.plan
        if (
            earlier is not None
            and planned is not None
            and only_re_emitted(earlier.rollout, rollout)
        ):
            # Only the tick wrote meanwhile, marking this very step emitted: it publishes a copy of
            # a due step its timer woke too, or of one that ran past the lost-event grace. Our plan
            # still holds, so it is committed and the copy will be stale; dropping our work instead
            # would let a step slower than the grace meet the same fate on every copy, forever.
            service = deps.store.get_service(rollout.service)
            if _same_record(service, earlier.service):
                log.info(
                    "the tick re-emitted this step while it ran; committing its plan",
                    extra={"rollout": rollout.id, "service": rollout.service, "event": event.id},
                )
                return finish(planned, loaded.version, service, rollout)
        stale = event_applies(rollout, event)
        if stale is None and done.count > 1 and not done.touched_traffic:
            # We lost a write race on this very phase and step: whoever won either moved the
            # rollout on (and published what comes next), scheduled its next check (the tick
            # brings it back), or is the tick publishing it. Redoing the step now would only
            # duplicate work that can be slow (a metrics query timing out) and contend again.
            # A step that moved traffic does redo it: re-applying its absolute weights is cheap,
            # and leaves the Service as the state it commits wants.
            stale = "another worker acted on this step first"
        if stale is not None:
            if done.touched_traffic or rollout.phase is Phase.DELETED:
                # We moved traffic, then lost the race: put traffic where the winner wants it. A
                # rollout ended by a delete may have had its Service re-created by a step that read
                # it before the delete was written (and crashed before its own write): removed again.
                reconcile_traffic(deps, rollout.service)
            log.info(
                "stale event dropped",
                extra={
                    "rollout": rollout.id,
                    "service": rollout.service,
                    "why": stale,
                    "event": event.id,
                },
            )
            return StepReport("stale", rollout.id, rollout.phase.value, stale)
        service = deps.store.get_service(rollout.service)
        context = StepContext(
            deps=deps,
            rollout=rollout,
            service=service,
            spec=rollout_spec(rollout, service),
            event=event,
            now=deps.clock.now(),
        )
        try:
            # A held phase waits for a person: only its deadline can move it.
            plan = deadline_plan(context) or (
                None if rollout.phase in HELD_PHASES else act(context)
            )
        except PermanentError as error:
            # Acknowledging the event and keeping the rollout would have the tick re-emit this
            # step every grace period, forever: the rollout ends here, with the reason.
            log.error(
                "step cannot go on; ending the rollout",
                extra={"rollout": rollout.id, "service": rollout.service, "error": str(error)},
            )
            plan = end_as_impossible(context, error)
        if plan is None:
            # Whoever set this due time scheduled its wake-up, unless it crashed or its scheduling
            # failed right after the commit: asking again is free (the task name is the same).
            schedule_wake_up(deps, rollout, cause=event.cause)
            return StepReport("waiting", rollout.id, rollout.phase.value, "not due yet")
        done.touched_traffic = done.touched_traffic or plan.touched_traffic
        done.context, done.plan = context, plan
        crashpoints.reach(crashpoints.AFTER_KUBE)
        return finish(plan, loaded.version, service, rollout)

    def finish(
        plan: Plan, version: object, service: Versioned[ServiceRecord] | None, rollout: Rollout
    ) -> StepReport:
        written = commit_plan(deps, plan, version, service, source=source)
        published = publish_if_due(deps, written, cause=event.cause, source=source)
        next_rollout = written[0]
        log_decision(rollout, plan.decision)
        return StepReport(
            "applied", rollout.id, next_rollout.phase.value, published=[p for p in published if p]
        )

    return retry_on_conflict(attempt, what=f"rollout {event.rollout_id}")


def end_as_impossible(ctx: StepContext, error: PermanentError) -> Plan:
    """End a rollout whose step met an error no retry can fix, traffic back on stable if it can be.

    The Service itself may be what is gone (deleted with kubectl): then there is no traffic to
    return, and the log says so rather than the rollout waiting for a step that cannot happen.
    """
    step = ctx.event.type.name.lower().replace("_", "-")
    problem = bounded(str(error), 500)
    return end_badly(
        ctx,
        Outcome.STEP_IMPOSSIBLE,
        f"the {step} step cannot go on: {problem}",
        values={"error": problem, "step": step},
    )


def end_badly(
    ctx: StepContext,
    outcome: Outcome,
    reason: str,
    *,
    values: dict[str, Any] | None = None,
    thresholds: dict[str, Any] | None = None,
    **updates: Any,
) -> Plan:
    """A step's plan ending the rollout along `outcome`: traffic back on stable, pointer cleared.

    When the traffic cannot be returned, the reason and the `traffic` value say why, and the
    outcome, measured values and thresholds are kept: the decision still explains itself.
    """

    def end(note: str | None, percent: int) -> tuple[Rollout, Decision]:
        return ctx.transition(
            outcome,
            reason=f"{reason}; {note}" if note else reason,
            values={**(values or {}), "traffic": note} if note else values,
            thresholds=thresholds,
            traffic_percent=percent,
            **updates,
        )

    ended = end_returning_traffic(ctx.deps, ctx.rollout, end)
    return Plan(
        ended.rollout,
        ended.decision,
        service=end_service_pointer(ctx.service, ended.rollout, ctx.now),
        touched_traffic=ended.touched_traffic,
    )


def only_re_emitted(acted_on: Rollout, now: Rollout) -> bool:
    """Whether `now` is `acted_on` marked emitted again by the tick, and nothing else changed."""
    return now.emitted_at != acted_on.emitted_at and now == acted_on.evolve(
        emitted_at=now.emitted_at
    )


def _same_record(
    now: Versioned[ServiceRecord] | None, then: Versioned[ServiceRecord] | None
) -> bool:
    return (now.value if now else None) == (then.value if then else None)


def commit_plan(
    deps: Deps,
    plan: Plan,
    version: object,
    service: Versioned[ServiceRecord] | None,
    *,
    extra: Change | None = None,
    source: str = "",
) -> tuple[Rollout, bool]:
    """Write a plan as one preconditioned Change (plus `extra`); (the rollout as written, due now).

    A rollout due now is marked emitted in the same write: the caller publishes its next step.
    Raises PreconditionFailed when anything moved since it was read. Once written, its decisions
    are published on `hekaton-events` (shared/notifications.py), before the next step is.
    """
    now = deps.clock.now()
    next_rollout = plan.rollout
    due = next_rollout.active and next_rollout.due_at is not None and next_rollout.due_at <= now
    if due:
        next_rollout = next_rollout.evolve(emitted_at=now)
    change = extra or Change()
    change.rollouts.append((next_rollout, version))
    if plan.decision is not None:
        change.decisions.append((next_rollout.id, plan.decision))
    if plan.service is not None and service is not None:
        change.services.append((plan.service, service.version))
    deps.store.commit(change)
    crashpoints.reach(crashpoints.AFTER_COMMIT)
    notify_committed(deps, change, source=source)
    return next_rollout, due


def publish_if_due(
    deps: Deps, written: tuple[Rollout, bool], *, cause: str, source: str
) -> list[str]:
    """Publish the next step of a rollout commit_plan wrote if it was due at once, else schedule it."""
    rollout, due = written
    if due:
        return [publish_next(deps, rollout, cause=cause, source=source)]
    schedule_wake_up(deps, rollout, cause=cause)
    return []


def schedule_wake_up(deps: Deps, rollout: Rollout, *, cause: str) -> None:
    """Ask the timers to deliver the rollout's next step at its future due time.

    Never raises: the rollout is already committed, and the tick re-emits any due step, so a
    scheduling failure only makes this wait as late as the tick; it is logged for the operator.
    """
    event = next_step_event(rollout, cause=cause)
    if event is None or not rollout.active or rollout.due_at is None:
        return
    if rollout.due_at <= deps.clock.now():
        return  # due already: published now, or by the tick
    timer = Timer(event=event, seq=rollout.seq, due_at=rollout.due_at)
    try:
        outcome = deps.timers.schedule(timer)
    except Exception as exc:
        log.warning(
            "timer not scheduled (%s: %s); the tick will re-emit the step when it is due",
            type(exc).__name__,
            exc,
            extra={"rollout": rollout.id, "seq": rollout.seq, "due_at": rollout.due_at.isoformat()},
        )
        return
    log.debug(
        "timer %s",
        outcome.value,
        extra={"rollout": rollout.id, "seq": rollout.seq, "due_at": rollout.due_at.isoformat()},
    )


def log_decision(rollout: Rollout, decision: Decision | None) -> None:
    """One log line per transition."""
    if decision is None:
        return
    log.info(
        "rollout %s: %s -> %s (%s)",
        rollout.id,
        decision.phase_from,
        decision.phase_to,
        decision.reason,
        extra={"rollout": rollout.id, "service": rollout.service, "outcome": decision.outcome},
    )


# Births: the edges that start a rollout (a push, through ingest). The same skeleton as run_step:
# load what the edge needs, check the event still applies, let the edge decide, one preconditioned
# commit (the new rollout created must-not-exist), publish its first step.

# How many of a service's latest rollouts a birth sees, to order itself among earlier events.
RECENT_ROLLOUTS = 10


@dataclass(frozen=True)
class Ignored:
    """A birth's answer when the event starts nothing: the reason is recorded for whoever sent it."""

    reason: str


@dataclass
class BirthPlan:
    """What a birth decided: the new rollout with its first entry, the rollout it ends, the service change."""

    rollout: Rollout  # born in a phase the table's BIRTHS allow for its first entry's outcome
    decision: Decision  # its first entry (BirthContext.first_entry)
    ended: tuple[Rollout, Decision] | None = None  # the active rollout, moved along its edge
    service: ServiceRecord | None = None  # the service record as it is to be written


@dataclass(frozen=True)
class BirthContext:
    """Everything a birth decides from, loaded once per attempt by the engine."""

    deps: Deps
    service: Versioned[ServiceRecord]  # registered and not deleted
    active: Versioned[Rollout] | None  # the service's rollout in flight, if any
    recent: list[Rollout]  # the service's latest rollouts, newest first
    rollout_id: str  # the deterministic id of the rollout this event starts
    cause: str
    now: datetime

    def first_entry(
        self,
        rollout: Rollout,
        outcome: Outcome,
        *,
        reason: str,
        values: dict[str, Any] | None = None,
    ) -> Decision:
        """The new rollout's first log entry, checked against the table's births."""
        return first_entry(
            rollout, outcome, now=self.now, reason=reason, cause=self.cause, values=values
        )

    def end_active(
        self,
        outcome: Outcome,
        *,
        reason: str,
        values: dict[str, Any] | None = None,
        **updates: Any,
    ) -> tuple[Rollout, Decision]:
        """The active rollout moved along `outcome`'s edge (e.g. superseded by the new one)."""
        assert self.active is not None
        return transition(
            self.active.value,
            outcome,
            now=self.now,
            reason=reason,
            cause=self.cause,
            values=values,
            **updates,
        )


BirthAct = Callable[[BirthContext], BirthPlan | Ignored]


def run_birth(
    deps: Deps, *, service: str, rollout_id: str, cause: str, act: BirthAct, source: str
) -> StepReport:
    """Start the rollout `rollout_id` of `service` as `act` decides, once, under at-least-once delivery.

    A redelivered event finds its rollout and is "repeated" (its first step published again while
    nothing has moved it); an event that starts nothing is "ignored" with the reason in `detail`.
    """

    def attempt() -> StepReport:
        loaded = deps.store.get_service(service)
        if loaded is None:
            return StepReport("ignored", rollout_id, detail=f"service {service} was unregistered")
        if loaded.value.deleted_at is not None:
            return StepReport(
                "ignored",
                rollout_id,
                detail=f"service {service} was deleted; register it again to deploy it",
            )
        existing = deps.store.get_rollout(rollout_id)
        if existing is not None:
            # Nothing has moved it since its first entry: the publish of its first step may be
            # what was lost (a rollout born ended has no step to publish).
            again = (
                publish_next(deps, existing.value, cause=cause, source=source)
                if existing.value.seq == 1
                else ""
            )
            return StepReport(
                "repeated",
                rollout_id,
                existing.value.phase.value,
                "the rollout this event starts exists",
                published=[again] if again else [],
            )
        active_id = loaded.value.active_rollout_id
        active = deps.store.get_rollout(active_id) if active_id else None
        context = BirthContext(
            deps=deps,
            service=loaded,
            active=active if active is not None and active.value.active else None,
            recent=deps.store.list_rollouts(service, limit=RECENT_ROLLOUTS),
            rollout_id=rollout_id,
            cause=cause,
            now=deps.clock.now(),
        )
        plan = act(context)
        if isinstance(plan, Ignored):
            return StepReport("ignored", rollout_id, detail=plan.reason)
        written = commit_plan(
            deps,
            Plan(plan.rollout, plan.decision, plan.service),
            MUST_NOT_EXIST,
            loaded,
            extra=_birth_extra(context, plan),
            source=source,
        )
        published = publish_if_due(deps, written, cause=cause, source=source)
        if plan.ended is not None:
            log_decision(*plan.ended)
        log_decision(plan.rollout, plan.decision)
        return StepReport(
            "applied", rollout_id, written[0].phase.value, published=[p for p in published if p]
        )

    return retry_on_conflict(attempt, what=f"{source} for {service}")


def _birth_extra(ctx: BirthContext, plan: BirthPlan) -> Change:
    """Refuse a plan that is not a table birth; the part of its write that ends the active rollout."""
    decision = plan.decision
    if (decision.seq, decision.phase_to, plan.rollout.seq) != (1, plan.rollout.phase.value, 1):
        raise IllegalTransition(f"rollout {plan.rollout.id} is not born by its first entry")
    birth_phase(Outcome(decision.outcome), plan.rollout.phase)
    if plan.ended is None:
        return Change()
    ended, entry = plan.ended
    if ctx.active is None or ended.id != ctx.active.value.id:
        raise IllegalTransition(
            f"a birth can only end the service's active rollout, not {ended.id}"
        )
    return Change(rollouts=[(ended, ctx.active.version)], decisions=[(ended.id, entry)])


def deadline_plan(ctx: StepContext) -> Plan | None:
    """The phase's deadline edge when its own deadline has passed (None otherwise): traffic back on stable."""
    rollout = ctx.rollout
    outcome = DEADLINE_OUTCOMES.get(rollout.phase)
    if outcome is None or rollout.deadline_at is None or ctx.now < rollout.deadline_at:
        return None
    return end_badly(
        ctx,
        outcome,
        f"{rollout.phase.value} did not finish by its deadline "
        f"({rollout.deadline_at.isoformat()}): {DEADLINE_REASONS[rollout.phase]}",
        values={"phase": rollout.phase.value, "traffic_percent_before": rollout.traffic_percent},
        thresholds={"deadline_at": rollout.deadline_at.isoformat()},
    )


# What a passed deadline means, per phase, for the decision log.
DEADLINE_REASONS: dict[Phase, str] = {
    Phase.PAUSED: "paused for too long; rolled back so a forgotten canary does not keep its share",
    Phase.AWAITING_APPROVAL: "nobody approved the promotion in time; rolled back",
}


def publish_next(deps: Deps, rollout: Rollout, *, cause: str, source: str) -> str:
    """Publish the event that runs the step for the rollout's current phase."""
    event = next_step_event(rollout, cause=cause)
    if event is None:
        return ""
    crashpoints.reach(crashpoints.BEFORE_PUBLISH)
    return deps.publisher.publish_step(event, source=source)


def next_step_event(rollout: Rollout, *, cause: str) -> StepEvent | None:
    """The event that runs the step for the rollout's current phase (None when it has none)."""
    step = rollout.phase.step
    if step is None:
        return None
    return StepEvent(
        type=step,
        rollout_id=rollout.id,
        service=rollout.service,
        phase=rollout.phase.value,
        step_index=rollout.step_index,
        cause=cause,
    )


def later(now: datetime, seconds: float) -> datetime:
    """A due time `seconds` from now."""
    return now + timedelta(seconds=seconds)


def apply_traffic(deps: Deps, rollout: Rollout) -> bool:
    """Set the Service's traffic to what the rollout's state wants; True if anything was sent."""
    traffic = desired_traffic(rollout)
    if not traffic:
        return False
    deps.serving.set_traffic(rollout.namespace, rollout.service, traffic)
    return True


# An ending rollout: `end(note, traffic_percent)` is its transition, `note` saying why the traffic
# could not be returned to the stable revision (None: it was).
EndTransition = Callable[[str | None, int], tuple[Rollout, Decision]]


@dataclass(frozen=True)
class Ended:
    """A rollout ended, with its log entry, whether traffic was sent, and why not if it could not be."""

    rollout: Rollout
    decision: Decision
    touched_traffic: bool
    note: str | None = None


def end_returning_traffic(
    deps: Deps, before: Rollout, end: EndTransition, *, refusal_ends: bool = True
) -> Ended:
    """End a rollout through `end`, traffic back on its stable revision first.

    A Knative Service deleted behind hekaton's back has no traffic to return: the rollout still
    ends, saying so, instead of waiting for a Service that will not come back. A traffic write the
    cluster refuses (a right taken away) ends it too when `refusal_ends` (a step: no retry fixes
    it), saying what may still reach the candidate and what to do; otherwise the refusal is raised
    and nothing is written (an operator's command: the person sees it and can ask again).
    """
    ended, decision = end(None, 0)
    try:
        return Ended(ended, decision, apply_traffic(deps, ended))
    except GoneFromCluster as gone:
        note, percent = f"no traffic to return: {bounded(str(gone), 300)}", 0
    except PermanentError as refused:
        if not refusal_ends:
            raise
        # The candidate keeps the share hekaton last set: the record says so rather than 0 %.
        percent = before.traffic_percent
        where = (
            f"the candidate may still take {percent} % (as last recorded)"
            if percent
            else "the candidate took no user traffic, but its route entry may stay"
        )
        note = (
            f"traffic not returned: {bounded(str(refused), 300)}; {where}; once hekaton may "
            "patch the Service again (check its Role in the namespace), the tick's route repair "
            "puts the stable route back within HEKATON_ROUTE_REPAIR_SECONDS of this ending, or "
            f"`hekaton rollback {before.service} --to {ended.stable_revision}` does it at once"
        )
    ended, decision = end(note, percent)
    return Ended(ended, decision, False, note)


def reconcile_traffic(deps: Deps, service_name: str) -> None:
    """Re-apply the traffic that the service's current state wants (after losing a race); a deleted
    service's Service is removed again."""
    service = deps.store.get_service(service_name)
    if service is None:
        return
    if service.value.deleted_at is not None:
        # The delete removed its Service after its write; a step that read the rollout before that
        # write may have created it again since (deploy creates a missing Service): remove it again.
        deps.serving.delete_service(service.value.namespace, service_name)
        return
    active_id = service.value.active_rollout_id
    active = deps.store.get_rollout(active_id) if active_id else None
    # A DEPLOYING rollout's revision may not exist yet: naming it would break the Route, so until its
    # deploy step creates it (and sets traffic itself) the stable revision alone is what it wants.
    if active is not None and active.value.active and active.value.phase is not Phase.DEPLOYING:
        apply_traffic(deps, active.value)
        return
    resting = resting_traffic(service.value, deps.clock.now())
    if resting:
        deps.serving.set_traffic(service.value.namespace, service_name, resting)


def end_service_pointer(
    service: Versioned[ServiceRecord] | None, rollout: Rollout, now: datetime
) -> ServiceRecord | None:
    """The service record with its active-rollout pointer cleared, if it points at this rollout."""
    if service is None or service.value.active_rollout_id != rollout.id:
        return None
    return service.value.evolve(active_rollout_id=None, updated_at=now)
