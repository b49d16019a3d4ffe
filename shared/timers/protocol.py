"""The Timers Protocol: schedule the delivery of a step event at its due time, idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from events.steps import StepEvent


@dataclass(frozen=True)
class Timer:
    """Deliver `event` at `due_at`: the wake-up of rollout `event.rollout_id` at sequence `seq`."""

    event: StepEvent
    seq: int
    due_at: datetime

    @property
    def rollout_id(self) -> str:
        """The rollout this timer wakes."""
        return self.event.rollout_id


class Scheduled(StrEnum):
    """What scheduling a timer did."""

    CREATED = "created"  # a new task will deliver the event at its due time
    EXISTS = "exists"  # a task of the same name was made before (a redelivered step): success
    TICK_ONLY = "tick-only"  # no timer backend: the tick re-emits the step when it is due


class Timers(Protocol):
    """Schedules step events for their due time; the same timer twice makes one task."""

    def schedule(self, timer: Timer) -> Scheduled:
        """Schedule `timer`; raise on failure (the caller logs it, the tick stays the safety net)."""
        ...
