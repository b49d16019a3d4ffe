"""Cascading deletion: objects whose ``ownerReferences`` owner is gone are deleted (background)."""

from __future__ import annotations

from local.kube import store as storage
from local.kube.event_pump import EventPump
from local.kube.registry import Registry, metadata_of
from local.kube.resources import RESOURCE_TYPES


class GarbageCollector:
    """Deletes dependents when their owner is deleted, like Kubernetes' background propagation."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._pump = EventPump(registry.store, "garbage-collector", self._on_event, self._sweep)

    def start(self) -> None:
        """Start following deletions."""
        self._pump.start()

    def stop(self) -> None:
        """Stop the collector thread."""
        self._pump.stop()

    def _on_event(self, event: storage.Event) -> None:
        if event.type == storage.DELETED and event.namespace:
            uid = metadata_of(event.object).get("uid")
            if uid:
                self._registry.delete_dependents(event.namespace, uid)
        elif event.type == storage.ADDED and metadata_of(event.object).get("ownerReferences"):
            self._sweep_namespace(event.namespace)

    def _sweep(self) -> None:
        """Delete every object whose owners all no longer exist (level-based catch-up)."""
        namespaces = {ns for ns, _ in self._all_objects()}
        for namespace in namespaces:
            self._sweep_namespace(namespace)

    def _all_objects(self) -> list[tuple[str, dict[str, object]]]:
        found = []
        for resource in RESOURCE_TYPES:
            if resource.namespaced:
                items, _ = self._registry.store.list_objects(resource.key, None)
                found += [(str(metadata_of(obj).get("namespace")), obj) for obj in items]
        return found

    def _sweep_namespace(self, namespace: str) -> None:
        objects = [
            obj
            for resource in RESOURCE_TYPES
            if resource.namespaced
            for obj in self._registry.store.list_objects(resource.key, namespace)[0]
        ]
        alive = {metadata_of(obj).get("uid") for obj in objects}
        for obj in objects:
            owners = [
                ref.get("uid")
                for ref in metadata_of(obj).get("ownerReferences") or []
                if isinstance(ref, dict)
            ]
            if owners and not any(uid in alive for uid in owners):
                for uid in owners:
                    if uid:
                        self._registry.delete_dependents(namespace, uid)
