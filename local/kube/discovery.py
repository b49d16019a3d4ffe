"""Discovery documents: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<g>[/<v>]``."""

from __future__ import annotations

import hashlib
import platform
from typing import Any

from local.kube import resources
from local.kube.resources import ResourceType

Obj = dict[str, Any]

KUBERNETES_VERSION = "v1.32.0"
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_NAMESPACE_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def version() -> Obj:
    """``/version``: the Kubernetes version this server speaks."""
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": f"{KUBERNETES_VERSION}+hekaton-local",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "python" + platform.python_version(),
        "compiler": "cpython",
        "platform": f"{platform.system().lower()}/{platform.machine()}",
    }


def core_versions(server_address: str) -> Obj:
    """``/api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> Obj:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def group_list() -> Obj:
    """``/apis``: every group with its versions."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions) for name, versions in resources.groups().items()],
    }


def group(name: str) -> Obj | None:
    """``/apis/<group>``, or None if not served."""
    versions = resources.groups().get(name)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _storage_hash(resource: ResourceType) -> str:
    digest = hashlib.sha256(f"{resource.group}/{resource.versions[0]}/{resource.kind}".encode())
    return digest.hexdigest()[:11]


def _verbs(resource: ResourceType) -> list[str]:
    if resource.review:
        return ["create"]
    return _NAMESPACE_VERBS if resource is resources.NAMESPACES else _VERBS


def _resource_entries(resource: ResourceType) -> list[Obj]:
    entry: Obj = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": _verbs(resource),
        "storageVersionHash": _storage_hash(resource),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    entries = [entry]
    if resource.status_subresource:
        entries.append(
            {
                "name": f"{resource.plural}/status",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    return entries


def resource_list(group_name: str, version_name: str) -> Obj | None:
    """``/apis/<group>/<version>`` (or ``/api/v1``), or None if not served."""
    served = resources.in_group_version(group_name, version_name)
    if not served:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group_name}/{version_name}" if group_name else version_name,
        "resources": [entry for resource in served for entry in _resource_entries(resource)],
    }
