"""A background thread feeding every store event to a handler (the in-process "informer")."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from local.kube import store as storage

log = logging.getLogger(__name__)


class EventPump:
    """Watches the whole store and calls ``handle(event)``; after a gap, calls ``resync()``."""

    def __init__(
        self,
        store: storage.Store,
        name: str,
        handle: Callable[[storage.Event], None],
        resync: Callable[[], None],
    ) -> None:
        self._store = store
        self._name = name
        self._handle = handle
        self._resync = resync
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: storage.Watch | None = None

    def start(self) -> None:
        """Resync once, then follow events from the current revision."""
        self._watch = self._store.watch(None, None, self._store.revision())
        self._safely(self._resync)
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following events and wait for the thread."""
        self._stopping.set()
        if self._watch is not None:
            self._watch.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            assert self._watch is not None
            try:
                event = self._watch.next(timeout=1.0)
            except storage.HistoryExpired:
                # Fell behind the retained history: start over from a full resync.
                self._watch = self._store.watch(None, None, self._store.revision())
                self._safely(self._resync)
                continue
            if event is not None:
                self._safely(lambda e=event: self._handle(e))  # type: ignore[misc]

    def _safely(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:  # a bad object must not stop the pump
            log.exception("%s: handler failed", self._name)
