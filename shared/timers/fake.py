"""An in-memory Timers for unit tests: keeps every task by name, like Cloud Tasks, and can fail."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.timers.naming import task_id
from shared.timers.protocol import Scheduled, Timer


@dataclass
class FakeTimers:
    """Records scheduled timers by task id; `fail_with` makes every schedule raise it."""

    tasks: dict[str, Timer] = field(default_factory=dict)
    attempts: int = 0
    fail_with: Exception | None = None

    def schedule(self, timer: Timer) -> Scheduled:
        """Keep the timer under its task id; a known id is EXISTS (as ALREADY_EXISTS in Cloud Tasks)."""
        self.attempts += 1
        if self.fail_with is not None:
            raise self.fail_with
        name = task_id(timer.rollout_id, timer.seq, timer.due_at)
        if name in self.tasks:
            return Scheduled.EXISTS
        self.tasks[name] = timer
        return Scheduled.CREATED
