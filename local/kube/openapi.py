"""OpenAPI documents (v3 per group-version, and v2) so ``kubectl apply`` can validate and patch.

kubectl checks in the v3 document that a kind's PATCH operation accepts the ``fieldValidation``
query parameter (then the server validates) and which patch media types it accepts (custom
resources: no strategic merge, so kubectl falls back to a JSON merge patch).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from local.kube import resources
from local.kube.discovery import KUBERNETES_VERSION
from local.kube.registry import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH
from local.kube.resources import ResourceType

Obj = dict[str, Any]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_OBJECT_META = f"{_META}.ObjectMeta"
_LIST_META = f"{_META}.ListMeta"
_STATUS = f"{_META}.Status"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
_SHARED_SCHEMAS: dict[str, Obj] = {
    _OBJECT_META: {
        "description": "Standard object metadata.",
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "generateName": {"type": "string"},
            "namespace": {"type": "string"},
            "uid": {"type": "string"},
            "resourceVersion": {"type": "string"},
            "generation": {"type": "integer", "format": "int64"},
            "creationTimestamp": {"type": "string", "format": "date-time"},
            "deletionTimestamp": {"type": "string", "format": "date-time"},
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
            "labels": _STRING_MAP,
            "annotations": _STRING_MAP,
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}},
            "ownerReferences": {
                "type": "array",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "managedFields": {
                "type": "array",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "selfLink": {"type": "string"},
        },
    },
    _LIST_META: {
        "type": "object",
        "properties": {
            "resourceVersion": {"type": "string"},
            "continue": {"type": "string"},
            "remainingItemCount": {"type": "integer", "format": "int64"},
        },
    },
    _STATUS: {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "status": {"type": "string"},
            "message": {"type": "string"},
            "reason": {"type": "string"},
            "code": {"type": "integer", "format": "int32"},
            "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    },
}


# Top-level fields that hold lists (RBAC rules and subjects); the others are objects.
_LIST_FIELDS: dict[str, Obj] = {
    name: {
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }
    for name in ("rules", "subjects")
}


def _schema_name(resource: ResourceType, version: str) -> str:
    if not resource.group:
        return f"io.k8s.api.core.v1.{resource.kind}"
    reversed_group = ".".join(reversed(resource.group.split(".")))
    return f"{reversed_group}.{version}.{resource.kind}"


def _gvk(resource: ResourceType, version: str) -> Obj:
    return {"group": resource.group, "version": version, "kind": resource.kind}


def _object_schema(resource: ResourceType, version: str, ref_prefix: str) -> Obj:
    free_form = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    own = {name: _LIST_FIELDS.get(name, free_form) for name in resource.fields}
    return {
        "description": f"{resource.kind} ({resource.api_version(version)})",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"$ref": f"{ref_prefix}{_OBJECT_META}"},
            **own,
        },
        "x-kubernetes-group-version-kind": [_gvk(resource, version)],
    }


def _list_schema(resource: ResourceType, version: str, ref_prefix: str) -> Obj:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"$ref": f"{ref_prefix}{_LIST_META}"},
            "items": {
                "type": "array",
                "items": {"$ref": f"{ref_prefix}{_schema_name(resource, version)}"},
            },
        },
        "x-kubernetes-group-version-kind": [
            {"group": resource.group, "version": version, "kind": resource.list_kind}
        ],
    }


def _query(name: str, description: str, kind: str = "string") -> Obj:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": kind, "uniqueItems": True},
    }


_WRITE_PARAMETERS = [
    _query("dryRun", "When present, indicates that modifications should not be persisted."),
    _query("fieldManager", "A name associated with the actor or entity making these changes."),
    _query(
        "fieldValidation",
        "How the server handles unknown fields in the object: Ignore, Warn or Strict.",
    ),
]
_LIST_PARAMETERS = [
    _query("labelSelector", "A selector to restrict the list of returned objects by labels."),
    _query("fieldSelector", "A selector to restrict the list of returned objects by fields."),
    _query("resourceVersion", "Where a watch or list starts."),
    _query("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    _query("watch", "Watch for changes and return them as a stream of events.", "boolean"),
    _query("limit", "Maximum number of items to return.", "integer"),
    _query("continue", "Continue token of the previous page."),
]


def _operation(resource: ResourceType, version: str, action: str, ref: str, **extra: Any) -> Obj:
    operation: Obj = {
        "description": f"{action} {resource.kind}",
        "operationId": f"{action}{resource.kind}",
        "tags": [f"{resource.group or 'core'}_{version}"],
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": ref}}},
            },
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(resource, version),
    }
    operation.update(extra)
    return operation


def _paths(resource: ResourceType, version: str) -> Obj:
    prefix = "#/components/schemas/"
    ref = prefix + _schema_name(resource, version)
    list_ref = ref + "List"
    base = f"/apis/{resource.group}/{version}" if resource.group else f"/api/{version}"
    body = {"content": {"*/*": {"schema": {"$ref": ref}}}, "required": True}
    patch_types = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
    if not resource.custom:
        patch_types.append(STRATEGIC_MERGE_PATCH)
    patch_body = {
        "content": {media: {"schema": {"type": "object"}} for media in patch_types},
        "required": True,
    }
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    namespace_param = {
        "name": "namespace",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    scope = (
        f"{base}/namespaces/{{namespace}}/{resource.plural}"
        if resource.namespaced
        else f"{base}/{resource.plural}"
    )
    scope_parameters = [namespace_param] if resource.namespaced else []
    item_parameters = [*scope_parameters, name_param]
    paths: Obj = {
        scope: {
            "get": _operation(resource, version, "list", list_ref, parameters=_LIST_PARAMETERS),
            "post": _operation(
                resource, version, "post", ref, parameters=_WRITE_PARAMETERS, requestBody=body
            ),
            "parameters": scope_parameters,
        },
        f"{scope}/{{name}}": {
            "get": _operation(resource, version, "get", ref),
            "put": _operation(
                resource, version, "put", ref, parameters=_WRITE_PARAMETERS, requestBody=body
            ),
            "patch": _operation(
                resource,
                version,
                "patch",
                ref,
                parameters=[*_WRITE_PARAMETERS, _query("force", "Force an apply.", "boolean")],
                requestBody=patch_body,
            ),
            "delete": _operation(resource, version, "delete", prefix + _STATUS),
            "parameters": item_parameters,
        },
    }
    if resource.status_subresource:
        paths[f"{scope}/{{name}}/status"] = {
            "get": _operation(resource, version, "get", ref),
            "put": _operation(
                resource, version, "put", ref, parameters=_WRITE_PARAMETERS, requestBody=body
            ),
            "patch": _operation(
                resource,
                version,
                "patch",
                ref,
                parameters=_WRITE_PARAMETERS,
                requestBody=patch_body,
            ),
            "parameters": item_parameters,
        }
    if resource.namespaced:
        paths[f"{base}/{resource.plural}"] = {
            "get": _operation(resource, version, "list", list_ref, parameters=_LIST_PARAMETERS)
        }
    return paths


def _group_version_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@cache
def v3_document(group: str, version: str) -> str | None:
    """The OpenAPI 3.0 document (JSON text) for one group-version, or None if not served."""
    served = resources.in_group_version(group, version)
    if not served:
        return None
    prefix = "#/components/schemas/"
    paths: Obj = {}
    schemas: Obj = dict(_SHARED_SCHEMAS)
    for resource in served:
        paths.update(_paths(resource, version))
        schemas[_schema_name(resource, version)] = _object_schema(resource, version, prefix)
        schemas[_schema_name(resource, version) + "List"] = _list_schema(resource, version, prefix)
    document = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    return json.dumps(document, sort_keys=True)


def _hash(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()[:128].upper()


@cache
def v3_index() -> str:
    """``/openapi/v3``: where each group-version's document is, with a content hash."""
    group_versions: list[tuple[str, str]] = [("", "v1")]
    for group, versions in resources.groups().items():
        group_versions += [(group, version) for version in versions]
    paths = {}
    for group, version in group_versions:
        document = v3_document(group, version)
        assert document is not None
        path = _group_version_path(group, version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={_hash(document)}"}
    return json.dumps({"paths": paths}, sort_keys=True)


@cache
def v2_document() -> str:
    """``/openapi/v2`` as JSON (Swagger 2.0) with every kind's definition."""
    prefix = "#/definitions/"
    definitions: Obj = dict(_SHARED_SCHEMAS)
    for resource in resources.RESOURCE_TYPES:
        for version in resource.versions:
            definitions[_schema_name(resource, version)] = _object_schema(resource, version, prefix)
            definitions[_schema_name(resource, version) + "List"] = _list_schema(
                resource, version, prefix
            )
    document = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": {},
        "definitions": definitions,
    }
    return json.dumps(document, sort_keys=True)
