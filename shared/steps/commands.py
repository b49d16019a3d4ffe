"""Operator commands through the engine: load, check the request applies, act, one commit, publish.

The same skeleton as `engine.run_step`, for requests instead of step events: the request record
(created must-not-exist in the same batch as the change) makes every request apply once, whatever
the redelivery; a refusal is recorded too, so a repeated request gets the same answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.commands import CommandRequest, CommandResult, Refused, bounded
from shared.deps import Deps
from shared.errors import PreconditionFailed
from shared.idempotency import MAX_KEY, fingerprint, request_id
from shared.model import Decision, RequestRecord, Rollout, ServiceRecord
from shared.notifications import notify_committed
from shared.phases import COMMANDS, Outcome, command_refusal
from shared.spec import ServiceSpec
from shared.steps.engine import (
    end_returning_traffic,
    log_decision,
    publish_next,
    reconcile_traffic,
    retry_on_conflict,
    rollout_spec,
    schedule_wake_up,
    transition,
)
from shared.store import Change, Versioned

SOURCE = "control"


@dataclass(frozen=True)
class CommandContext:
    """Everything a command decides from, loaded once per attempt."""

    deps: Deps
    request: CommandRequest
    service: Versioned[ServiceRecord]
    rollout: Versioned[Rollout] | None  # the rollout the command acts on (None: nothing in flight)
    now: datetime

    @property
    def spec(self) -> ServiceSpec | None:
        """The spec the rollout is judged by (or the service's)."""
        return rollout_spec(self.rollout.value, self.service) if self.rollout else None

    def transition(
        self,
        outcome: Outcome,
        *,
        what: str | None = None,
        values: dict[str, Any] | None = None,
        **updates: Any,
    ) -> tuple[Rollout, Decision]:
        """The rollout moved along `outcome`'s edge, recording who asked, why, and the request key."""
        assert self.rollout is not None
        return transition(
            self.rollout.value,
            outcome,
            now=self.now,
            reason=self.reason(what),
            cause=self.request.key,
            values={**self.who(), **(values or {})},
            **updates,
        )

    def reason(self, what: str | None = None) -> str:
        """`<command> requested by <principal>: <reason>` (+ what it did)."""
        text = f"{self.request.command} requested by {self.request.principal}"
        if self.request.origin == "pubsub":
            # A message id helps find the publisher's side; an API request's key is in the values.
            text += f" (message {bounded(self.request.key, 80)})"
        if self.request.reason:
            text += f": {self.request.reason}"
        return f"{text} ({what})" if what else text

    def who(self) -> dict[str, Any]:
        """The decision-log fields naming the request."""
        return {
            "requested_by": self.request.principal,
            "request_reason": self.request.reason,
            "request_key": self.request.key,
        }


@dataclass
class CommandPlan:
    """What a command decided: the change to write, a rollout whose next step to publish, the answer."""

    change: Change
    detail: str
    rollout: Rollout | None = None
    publish: bool = False
    touched_traffic: bool = False
    result: dict[str, Any] = field(default_factory=dict)


CommandAct = Callable[[CommandContext], CommandPlan]


def run_command(deps: Deps, request: CommandRequest, acts: dict[str, CommandAct]) -> CommandResult:
    """Apply one operator request once; raise Refused (recorded, nothing changed) when it cannot apply."""
    rid = request_id(request.origin, request.key)
    asked = fingerprint(request.ask())
    touched = {"traffic": False}

    def attempt() -> CommandResult:
        done = deps.store.get_request(rid)
        if done is not None:
            return _repeat(done, asked)
        now = deps.clock.now()
        try:
            ctx = _load(deps, request, now)
            plan = acts[request.command](ctx)
        except Refused as refused:
            _record_refusal(deps, request, rid, asked, refused, now)
            if touched["traffic"]:
                reconcile_traffic(deps, request.service or "")
            raise
        touched["traffic"] = touched["traffic"] or plan.touched_traffic
        record = RequestRecord(
            id=rid,
            key=request.key[:MAX_KEY],
            command=request.command,
            service=ctx.service.value.name,
            at=now,
            status="applied",
            principal=request.principal,
            reason=bounded(request.reason),
            detail=bounded(plan.detail),
            rollout_id=plan.rollout.id if plan.rollout else None,
            fingerprint=asked,
            result={**plan.result, "phase": plan.rollout.phase.value if plan.rollout else None},
        )
        plan.change.requests.append(record)
        try:
            deps.store.commit(plan.change)
        except PreconditionFailed:
            if plan.touched_traffic:
                reconcile_traffic(deps, ctx.service.value.name)
            raise
        notify_committed(deps, plan.change, source=SOURCE)
        for _rollout_id, decision in plan.change.decisions:
            if plan.rollout is not None:
                log_decision(plan.rollout, decision)
        if plan.publish and plan.rollout is not None:
            publish_next(deps, plan.rollout, cause=request.key, source=SOURCE)
        elif plan.rollout is not None:
            schedule_wake_up(deps, plan.rollout, cause=request.key)
        return _result(record, "applied")

    return retry_on_conflict(attempt, what=f"{request.command} of {request.service}")


def _load(deps: Deps, request: CommandRequest, now: datetime) -> CommandContext:
    rollout: Versioned[Rollout] | None = None
    service_name = request.service
    if request.rollout_id is not None:
        rollout = deps.store.get_rollout(request.rollout_id)
        if rollout is None:
            raise Refused("not_found", f"rollout {request.rollout_id!r} does not exist")
        if service_name and rollout.value.service != service_name:
            raise Refused(
                "not_found",
                f"rollout {request.rollout_id} is a rollout of {rollout.value.service}, "
                f"not {service_name}",
            )
        service_name = rollout.value.service
    if not service_name:
        raise Refused("invalid", "the request names neither a service nor a rollout")
    service = deps.store.get_service(service_name)
    if service is None:
        raise Refused("not_found", f"service {service_name!r} is not registered")
    if service.value.deleted_at is not None and request.command != "delete":
        raise Refused(
            "not_found",
            f"service {service_name} was deleted at {service.value.deleted_at.isoformat()}",
        )
    if rollout is None and service.value.active_rollout_id:
        found = deps.store.get_rollout(service.value.active_rollout_id)
        rollout = found if found is not None and found.value.active else None
    if request.command in COMMANDS and request.command != "rollback":
        if rollout is None:
            raise Refused(
                "conflict",
                f"service {service_name} has no rollout in flight for {request.command} to act on",
            )
        why = command_refusal(request.command, rollout.value.phase)
        if why is not None:
            raise Refused("conflict", f"rollout {rollout.value.id}: {why}")
    return CommandContext(deps, request, service, rollout, now)


def _record_refusal(
    deps: Deps,
    request: CommandRequest,
    rid: str,
    asked: str,
    refused: Refused,
    now: datetime,
) -> None:
    """Keep the refusal (bounded) under the request's key: a repeat gets the same answer."""
    record = RequestRecord(
        id=rid,
        key=request.key[:MAX_KEY],
        command=request.command,
        service=bounded(request.service or "", 100),
        at=now,
        status="refused",
        principal=request.principal,
        reason=bounded(request.reason),
        detail=bounded(refused.reason),
        rollout_id=bounded(request.rollout_id, 100) if request.rollout_id else None,
        fingerprint=asked,
        result={"kind": refused.kind},
    )
    # PreconditionFailed: a copy of this request recorded it first; same request, same answer.
    with contextlib.suppress(PreconditionFailed):
        deps.store.commit(Change(requests=[record]))


def _repeat(done: RequestRecord, asked: str) -> CommandResult:
    if done.fingerprint and done.fingerprint != asked:
        raise Refused(
            "conflict",
            f"request key {done.key!r} was already used for another request "
            f"({done.command} of {done.service}); use a new key",
        )
    if done.status == "refused":
        raise Refused(str(done.result.get("kind") or "conflict"), done.detail)
    return _result(done, "repeated")


def _result(record: RequestRecord, status: str) -> CommandResult:
    extra = {k: v for k, v in record.result.items() if k != "phase"}
    return CommandResult(
        command=record.command,
        service=record.service,
        status=status,
        detail=record.detail,
        request_id=record.id,
        rollout_id=record.rollout_id,
        phase=record.result.get("phase"),
        result=extra,
    )


def simple_edge(ctx: CommandContext, outcome: Outcome, detail: str, **updates: Any) -> CommandPlan:
    """A command that only moves the rollout along its edge (and publishes the next step if due)."""
    assert ctx.rollout is not None
    moved, decision = ctx.transition(outcome, **updates)
    change = Change(rollouts=[(moved, ctx.rollout.version)], decisions=[(moved.id, decision)])
    due = moved.active and moved.due_at is not None and moved.due_at <= ctx.now
    if due:
        moved = moved.evolve(emitted_at=ctx.now)
        change.rollouts = [(moved, ctx.rollout.version)]
    return CommandPlan(change, detail, rollout=moved, publish=due)


def ending_edge(ctx: CommandContext, outcome: Outcome, detail: str, **updates: Any) -> CommandPlan:
    """A command that ends the rollout: traffic back on stable first, service pointer cleared."""
    assert ctx.rollout is not None
    before = ctx.rollout.value.traffic_percent

    def end(note: str | None, percent: int) -> tuple[Rollout, Decision]:
        traffic = {"traffic": note} if note else {}
        return ctx.transition(
            outcome,
            values={"traffic_percent_before": before, **traffic},
            traffic_percent=percent,
            **updates,
        )

    # A refused traffic write is answered to the person, nothing written: they can ask again.
    ending = end_returning_traffic(ctx.deps, ctx.rollout.value, end, refusal_ends=False)
    ended, decision = ending.rollout, ending.decision
    if ending.note:
        detail = f"{detail} ({ending.note})"
    change = Change(rollouts=[(ended, ctx.rollout.version)], decisions=[(ended.id, decision)])
    record = ctx.service.value
    if record.active_rollout_id == ended.id:
        change.services.append(
            (record.evolve(active_rollout_id=None, updated_at=ctx.now), ctx.service.version)
        )
    return CommandPlan(change, detail, rollout=ended, touched_traffic=ending.touched_traffic)
