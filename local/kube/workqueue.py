"""A de-duplicating work queue with delayed retries, as controllers use for reconcile keys."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Hashable


class WorkQueue:
    """Keys waiting to be reconciled; a key queued twice is processed once."""

    def __init__(self) -> None:
        self._ready: deque[Hashable] = deque()
        self._queued: set[Hashable] = set()
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._sequence = 0
        self._closed = False
        self._condition = threading.Condition()

    def add(self, key: Hashable) -> None:
        """Queue a key now (no-op if already waiting)."""
        with self._condition:
            if key not in self._queued and not self._closed:
                self._queued.add(key)
                self._ready.append(key)
                self._condition.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Queue a key once ``delay`` seconds have passed (a retry with backoff)."""
        with self._condition:
            self._sequence += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._sequence, key))
            self._condition.notify()

    def get(self, timeout: float) -> Hashable | None:
        """The next key, or None after ``timeout`` seconds or once closed."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not self._closed:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key = heapq.heappop(self._delayed)
                    if key not in self._queued:
                        self._queued.add(key)
                        self._ready.append(key)
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    return key
                wait = deadline - now
                if self._delayed:
                    wait = min(wait, self._delayed[0][0] - now)
                if deadline - now <= 0:
                    return None
                self._condition.wait(max(wait, 0.001))
        return None

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._closed

    def close(self) -> None:
        """Wake and stop every consumer."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
