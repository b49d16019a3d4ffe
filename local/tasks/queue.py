"""The emulator's state: named tasks per queue, due in order, names reserved after they ran.

Semantics follow the Cloud Tasks API documentation: a task name can be used once (a name
that is pending, or ran, is ALREADY_EXISTS), schedule times lie at most 30 days ahead, a task
whose target answers other than 2xx is retried with backoff, and ListTasks/GetTask see only tasks
that have not completed. Pure data and a clock: no threads, no I/O (see `server.py`).
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
QUEUE_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/queues/[A-Za-z0-9-]{1,100}$")
MAX_HORIZON = timedelta(days=30)
MAX_ATTEMPTS = 10
FIRST_BACKOFF = timedelta(milliseconds=100)
MAX_BACKOFF = timedelta(seconds=10)
# Bound on remembered names (Cloud Tasks keeps them about an hour; a dev stack never gets near).
MAX_TOMBSTONES = 100_000


class TaskError(Exception):
    """A refused call: `code` is the gRPC status name (ALREADY_EXISTS, NOT_FOUND, INVALID_ARGUMENT)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass
class Attempt:
    """One dispatch of a task and what its target answered."""

    dispatch_time: datetime
    response_time: datetime | None = None
    status: int | None = None  # HTTP status; None: no answer (connection failed)


@dataclass
class PendingTask:
    """A task that has not completed: its request and its attempts so far."""

    name: str
    schedule_time: datetime  # the next attempt's time (the original one until a retry)
    due_time: datetime  # the schedule time it was created with
    create_time: datetime
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    oauth_service_account: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    running: bool = False


class TaskQueues:
    """Queues and their tasks; the server calls it under one lock."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self.queues: set[str] = set()
        self.pending: dict[str, PendingTask] = {}
        self._used: dict[str, None] = {}  # names that ran or were deleted, oldest first
        self._due: list[tuple[datetime, int, str]] = []
        self._order = itertools.count()

    def create_queue(self, name: str) -> None:
        """Create a queue (ALREADY_EXISTS if it exists)."""
        if not QUEUE_NAME.match(name):
            raise TaskError(
                "INVALID_ARGUMENT", f"queue name {name!r} is not projects/P/locations/L/queues/Q"
            )
        if name in self.queues:
            raise TaskError("ALREADY_EXISTS", f"queue {name} already exists")
        self.queues.add(name)

    def create_task(self, queue: str, task: PendingTask) -> PendingTask:
        """Add a task; refuse an unknown queue, a bad or used name, a schedule time too far ahead."""
        if queue not in self.queues:
            raise TaskError("NOT_FOUND", f"queue {queue} does not exist")
        prefix = f"{queue}/tasks/"
        if not task.name.startswith(prefix) or not TASK_ID.match(task.name[len(prefix) :]):
            raise TaskError(
                "INVALID_ARGUMENT",
                f"task name {task.name!r} must be {prefix}ID, ID of [A-Za-z0-9_-] (at most 500)",
            )
        if task.name in self.pending or task.name in self._used:
            raise TaskError("ALREADY_EXISTS", f"task {task.name} already exists or ran recently")
        if task.schedule_time - self._now() > MAX_HORIZON:
            raise TaskError("INVALID_ARGUMENT", "schedule_time is more than 30 days ahead")
        if not task.url.startswith(("http://", "https://")):
            raise TaskError("INVALID_ARGUMENT", f"http_request.url {task.url!r} is not http(s)")
        self.pending[task.name] = task
        heapq.heappush(self._due, (task.schedule_time, next(self._order), task.name))
        return task

    def list_tasks(self, queue: str) -> list[PendingTask]:
        """The queue's tasks that have not completed, by schedule time."""
        if queue not in self.queues:
            raise TaskError("NOT_FOUND", f"queue {queue} does not exist")
        prefix = f"{queue}/tasks/"
        found = [t for t in self.pending.values() if t.name.startswith(prefix)]
        return sorted(found, key=lambda t: (t.schedule_time, t.name))

    def get_task(self, name: str) -> PendingTask:
        """A task that has not completed (NOT_FOUND otherwise, as in Cloud Tasks)."""
        if name not in self.pending:
            raise TaskError("NOT_FOUND", f"task {name} does not exist (or has completed)")
        return self.pending[name]

    def delete_task(self, name: str) -> None:
        """Remove a pending task; its name stays used."""
        self.get_task(name)
        del self.pending[name]
        self._retire(name)

    def next_due(self) -> datetime | None:
        """When the earliest task is due (None: nothing pending)."""
        while self._due and self._due[0][2] not in self.pending:
            heapq.heappop(self._due)  # deleted meanwhile
        return self._due[0][0] if self._due else None

    def take_due(self) -> list[PendingTask]:
        """The tasks due now, marked running (the caller dispatches each and reports back)."""
        now = self._now()
        taken: list[PendingTask] = []
        while self._due and self._due[0][0] <= now:
            _, _, name = heapq.heappop(self._due)
            task = self.pending.get(name)
            if task is None or task.running:
                continue
            task.running = True
            taken.append(task)
        return taken

    def finished(self, task: PendingTask, attempt: Attempt) -> bool:
        """Record an attempt; 2xx completes the task, else it is retried later. True if completed."""
        task.attempts.append(attempt)
        task.running = False
        ok = attempt.status is not None and 200 <= attempt.status < 300
        if ok or len(task.attempts) >= MAX_ATTEMPTS:
            self.pending.pop(task.name, None)
            self._retire(task.name)
            return ok
        backoff = min(FIRST_BACKOFF * 2 ** (len(task.attempts) - 1), MAX_BACKOFF)
        task.schedule_time = self._now() + backoff
        heapq.heappush(self._due, (task.schedule_time, next(self._order), task.name))
        return False

    def _retire(self, name: str) -> None:
        self._used[name] = None
        while len(self._used) > MAX_TOMBSTONES:
            del self._used[next(iter(self._used))]
