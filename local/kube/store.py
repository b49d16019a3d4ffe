"""In-memory object storage with a global resourceVersion, an event history and watches."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


class StoreError(Exception):
    """Base of the storage errors the registry turns into API errors."""


class ObjectNotFound(StoreError):
    """No object with that key."""


class ObjectExists(StoreError):
    """Create of a key that is taken."""


class VersionConflict(StoreError):
    """The caller's resourceVersion or uid precondition does not match the stored object."""


class HistoryExpired(StoreError):
    """A watch asked to start before the oldest event still retained."""


@dataclass(frozen=True)
class Event:
    """One change; ``object`` and ``previous`` are shared between watchers and must not be mutated."""

    type: str
    resource_version: int
    key: str  # resource storage key, e.g. "services.serving.knative.dev"
    namespace: str
    name: str
    object: Obj
    previous: Obj | None = None


def _rv(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


class Watch:
    """A cursor over the store's event history, filtered by resource and namespace."""

    def __init__(
        self,
        store: Store,
        key: str | None,
        namespace: str | None,
        cursor: int,
        initial: list[Event],
    ) -> None:
        self._store = store
        self._key = key
        self._namespace = namespace
        self._cursor = cursor
        self._initial = initial
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once closed by the consumer or by the store shutting down."""
        return self._closed

    def close(self) -> None:
        """Stop the watch; a blocked ``next`` returns None."""
        with self._store._changed:
            self._closed = True
            self._store._watches.discard(self)
            self._store._changed.notify_all()

    def _matches(self, event: Event) -> bool:
        if self._key is not None and event.key != self._key:
            return False
        return self._namespace is None or event.namespace == self._namespace

    def next(self, timeout: float) -> Event | None:
        """The next matching event, or None after ``timeout`` seconds or once closed.

        Raises HistoryExpired when this watch fell further behind than the retained history.
        """
        if self._initial:
            return self._initial.pop(0)
        deadline = time.monotonic() + timeout
        store = self._store
        with store._changed:
            while not self._closed:
                while self._cursor < store._revision:
                    event = store._event_after(self._cursor)
                    self._cursor = event.resource_version
                    if self._matches(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                store._changed.wait(remaining)
        return None


class Store:
    """Objects by (resource key, namespace, name); every write bumps one global revision."""

    def __init__(self, history_limit: int = 5000) -> None:
        self._history_limit = history_limit
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._revision = 0
        # _history[i] has resource_version _history_start + i; older events were dropped.
        self._history: list[Event] = []
        self._history_start = 1
        self._changed = threading.Condition(threading.RLock())
        self._watches: set[Watch] = set()

    @property
    def lock(self) -> threading.Condition:
        """Held across a read-check-write sequence that must be atomic (e.g. namespace auto-create)."""
        return self._changed

    def revision(self) -> int:
        """The current global resourceVersion."""
        with self._changed:
            return self._revision

    def oldest_watchable(self) -> int:
        """The oldest resourceVersion a watch may still start from."""
        with self._changed:
            return self._history_start - 1

    def get(self, key: str, namespace: str, name: str) -> Obj | None:
        """A copy of the object, or None."""
        with self._changed:
            found = self._objects.get(key, {}).get((namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def list_objects(self, key: str, namespace: str | None) -> tuple[list[Obj], int]:
        """Copies of the objects (all namespaces if None), sorted by namespace/name, and the revision."""
        with self._changed:
            items = [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._objects.get(key, {}).items())
                if namespace is None or ns == namespace
            ]
            return items, self._revision

    def keys_in_namespace(self, namespace: str) -> list[tuple[str, str]]:
        """(resource key, name) of every object stored in a namespace."""
        with self._changed:
            return [
                (key, name)
                for key, objects in self._objects.items()
                for (ns, name) in objects
                if ns == namespace
            ]

    def create(self, key: str, namespace: str, name: str, obj: Obj) -> Obj:
        """Store a new object (its resourceVersion is set here); returns a copy."""
        with self._changed:
            objects = self._objects.setdefault(key, {})
            if (namespace, name) in objects:
                raise ObjectExists(name)
            stored = self._stamp(obj)
            objects[(namespace, name)] = stored
            self._record(ADDED, key, namespace, name, stored, None)
            return copy.deepcopy(stored)

    def update(
        self, key: str, namespace: str, name: str, obj: Obj, expected_version: str | None
    ) -> Obj:
        """Replace an object if its resourceVersion still is ``expected_version`` (None: any)."""
        with self._changed:
            objects = self._objects.get(key, {})
            current = objects.get((namespace, name))
            if current is None:
                raise ObjectNotFound(name)
            if expected_version is not None and _rv(current) != expected_version:
                raise VersionConflict(name)
            stored = self._stamp(obj)
            objects[(namespace, name)] = stored
            self._record(MODIFIED, key, namespace, name, stored, current)
            return copy.deepcopy(stored)

    def delete(
        self,
        key: str,
        namespace: str,
        name: str,
        expected_version: str | None = None,
        expected_uid: str | None = None,
    ) -> Obj:
        """Remove an object; the DELETED event carries a new resourceVersion, as etcd's does."""
        with self._changed:
            objects = self._objects.get(key, {})
            current = objects.get((namespace, name))
            if current is None:
                raise ObjectNotFound(name)
            if expected_version is not None and _rv(current) != expected_version:
                raise VersionConflict(name)
            if expected_uid is not None and current["metadata"].get("uid") != expected_uid:
                raise VersionConflict(name)
            del objects[(namespace, name)]
            final = self._stamp(current)
            self._record(DELETED, key, namespace, name, final, current)
            return copy.deepcopy(final)

    def watch(self, key: str | None, namespace: str | None, since: int | None) -> Watch:
        """Watch changes after revision ``since``; None sends ADDED for every current object first."""
        with self._changed:
            initial: list[Event] = []
            if since is None:
                since = self._revision
                initial = [
                    Event(ADDED, int(_rv(obj)), k, ns, name, obj)
                    for k, objects in sorted(self._objects.items())
                    if key is None or k == key
                    for (ns, name), obj in sorted(objects.items())
                    if namespace is None or ns == namespace
                ]
            elif since < self._history_start - 1:
                raise HistoryExpired(
                    f"too old resource version: {since} ({self._history_start - 1})"
                )
            watch = Watch(self, key, namespace, min(since, self._revision), initial)
            self._watches.add(watch)
            return watch

    def close(self) -> None:
        """End every watch (server shutting down)."""
        with self._changed:
            for watch in list(self._watches):
                watch._closed = True
            self._watches.clear()
            self._changed.notify_all()

    def _stamp(self, obj: Obj) -> Obj:
        stored = copy.deepcopy(obj)
        self._revision += 1
        stored.setdefault("metadata", {})["resourceVersion"] = str(self._revision)
        return stored

    def _record(
        self, kind: str, key: str, namespace: str, name: str, obj: Obj, previous: Obj | None
    ) -> None:
        self._history.append(Event(kind, self._revision, key, namespace, name, obj, previous))
        if len(self._history) > 2 * self._history_limit:
            dropped = len(self._history) - self._history_limit
            del self._history[:dropped]
            self._history_start += dropped
            self._expire_lagging_watches()
        self._changed.notify_all()

    def _expire_lagging_watches(self) -> None:
        for watch in self._watches:
            if watch._cursor < self._history_start - 1:
                watch._cursor = -1  # marks it expired; raised on its next read

    def _event_after(self, cursor: int) -> Event:
        if cursor < self._history_start - 1:
            raise HistoryExpired(f"too old resource version: {cursor} ({self._history_start - 1})")
        return self._history[cursor + 1 - self._history_start]
