"""The Knative controller: maps store and runtime events to reconcile keys and runs them."""

from __future__ import annotations

import logging
import threading

from local.kube import knative_reconcile as reconcile
from local.kube import store as storage
from local.kube.contracts import RevisionRuntime, Router
from local.kube.errors import ApiError
from local.kube.event_pump import EventPump
from local.kube.registry import Registry, metadata_of
from local.kube.workqueue import WorkQueue

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (kind, namespace, name)

_RETRY_SECONDS = 0.05
_MAX_BACKOFF_SECONDS = 30.0

_KIND_OF_KEY = {
    reconcile.SERVICES.key: "Service",
    reconcile.CONFIGURATIONS.key: "Configuration",
    reconcile.ROUTES.key: "Route",
    reconcile.REVISIONS.key: "Revision",
}


class KnativeController:
    """Runs Knative Serving's reconcilers on one worker thread, fed by a watch on the store."""

    def __init__(
        self, registry: Registry, runtime: RevisionRuntime, router: Router, domain: str
    ) -> None:
        self._context = reconcile.Context(registry, runtime, router, domain)
        self._registry = registry
        self._queue = WorkQueue()
        self._pump = EventPump(registry.store, "knative-events", self._on_event, self._resync)
        self._worker: threading.Thread | None = None
        self._failures: dict[Key, int] = {}
        self._handlers = {
            "Service": reconcile.reconcile_service,
            "Configuration": reconcile.reconcile_configuration,
            "Route": reconcile.reconcile_route,
            "Revision": reconcile.reconcile_revision,
        }

    def start(self) -> None:
        """Listen to the runtime, follow the store, start the worker."""
        self._context.runtime.set_listener(self._on_runtime_change)
        self._pump.start()
        self._worker = threading.Thread(target=self._work, name="knative-controller", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following events and let the worker finish its current key."""
        self._pump.stop()
        self._queue.close()
        if self._worker is not None:
            self._worker.join(timeout)

    # ------------------------------------------------------------------ events -> keys

    def _on_runtime_change(self, namespace: str, revision: str) -> None:
        self._queue.add(("Revision", namespace, revision))

    def _on_event(self, event: storage.Event) -> None:
        kind = _KIND_OF_KEY.get(event.key)
        if kind is None:
            return
        namespace, name = event.namespace, event.name
        self._queue.add((kind, namespace, name))
        labels = metadata_of(event.object).get("labels") or {}
        service = labels.get(reconcile.SERVICE_LABEL)
        if kind in ("Configuration", "Route") and service:
            self._queue.add(("Service", namespace, service))
        if kind == "Revision":
            configuration = labels.get(reconcile.CONFIGURATION_LABEL)
            if configuration:
                self._queue.add(("Configuration", namespace, configuration))
        if kind in ("Revision", "Configuration"):
            # Routes follow configurations' latest ready revision and pinned revisions' health.
            self._enqueue_all("Route", reconcile.ROUTES.key, namespace)

    def _enqueue_all(self, kind: str, key: str, namespace: str | None) -> None:
        items, _ = self._registry.store.list_objects(key, namespace)
        for obj in items:
            metadata = obj["metadata"]
            self._queue.add((kind, metadata["namespace"], metadata["name"]))

    def _resync(self) -> None:
        for key, kind in _KIND_OF_KEY.items():
            self._enqueue_all(kind, key, None)

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while True:
            key = self._queue.get(timeout=1.0)
            if key is None:
                if self._queue.closed:
                    return
                continue
            assert isinstance(key, tuple)
            self._process(key)

    def _process(self, key: Key) -> None:
        kind, namespace, name = key
        try:
            self._handlers[kind](self._context, namespace, name)
        except ApiError as error:
            if reconcile.api_error_is_retryable(error):
                # Lost a race (conflict, concurrent delete): retry soon on fresh objects.
                self._queue.add_after(key, _RETRY_SECONDS)
                return
            log.warning("reconcile %s %s/%s: %s", kind, namespace, name, error.message)
            self._retry_with_backoff(key)
        except Exception:
            log.exception("reconcile %s %s/%s failed", kind, namespace, name)
            self._retry_with_backoff(key)
        else:
            self._failures.pop(key, None)

    def _retry_with_backoff(self, key: Key) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        self._queue.add_after(key, min(_RETRY_SECONDS * 2**failures, _MAX_BACKOFF_SECONDS))
