"""URL parsing: which resource, version, namespace, name and subresource a path addresses."""

from __future__ import annotations

from dataclasses import dataclass

from local.kube import resources
from local.kube.resources import ResourceType


@dataclass(frozen=True)
class Target:
    """A resource URL: ``namespace`` None means "all namespaces"; ``name`` None a collection."""

    resource: ResourceType
    version: str
    namespace: str | None
    name: str | None = None
    subresource: str | None = None


def _item(
    resource: ResourceType, version: str, namespace: str | None, rest: list[str]
) -> Target | None:
    if not rest:
        return Target(resource, version, namespace)
    if len(rest) == 1:
        return Target(resource, version, namespace, rest[0])
    if len(rest) == 2 and rest[1] == "status" and resource.status_subresource:
        return Target(resource, version, namespace, rest[0], "status")
    return None


def parse(path: str) -> Target | None:
    """The Target for ``/api/v1/...`` or ``/apis/<group>/<version>/...``; None if not served."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3:
        # /namespaces/<ns>/<plural>/...: a namespaced resource (or /namespaces/<ns>/status).
        namespace_resource = resources.find(group, version, "namespaces")
        if namespace_resource is not None and rest[2:] == ["status"]:
            return Target(namespace_resource, version, None, rest[1], "status")
        resource = resources.find(group, version, rest[2])
        if resource is None or not resource.namespaced:
            return None
        return _item(resource, version, rest[1], rest[3:])
    resource = resources.find(group, version, rest[0])
    if resource is None:
        return None
    if resource.namespaced:
        # /apis/<g>/<v>/<plural>: list or watch across all namespaces, nothing else.
        return Target(resource, version, None) if len(rest) == 1 else None
    return _item(resource, version, None, rest[1:])
