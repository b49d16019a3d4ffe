"""``meta.k8s.io/v1`` Table responses, so ``kubectl get`` prints each kind's printer columns."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from local.kube.durations import human_duration
from local.kube.resources import Column, ResourceType

Obj = dict[str, Any]

_NAME = Column(
    "Name",
    "string",
    lambda obj: (obj.get("metadata") or {}).get("name"),
    "Name must be unique within a namespace.",
)


def _age(timestamp: Any) -> str:
    try:
        created = datetime.strptime(str(timestamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - created).total_seconds())


def _cell(column: Column, obj: Obj) -> Any:
    value = column.read(obj)
    if value is None:
        return None
    if column.type == "date":
        return _age(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return value


def _row_object(obj: Obj, include_object: str) -> Obj | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def column_definitions(resource: ResourceType) -> list[Obj]:
    """The table's column headers: Name, then the kind's printer columns."""
    return [
        {
            "name": column.name,
            "type": column.type,
            "format": "name" if column is _NAME else "",
            "description": column.description or column.name,
            "priority": column.priority,
        }
        for column in (_NAME, *resource.columns)
    ]


def to_table(
    resource: ResourceType,
    objects: list[Obj],
    resource_version: str,
    include_object: str = "Metadata",
    continue_token: str | None = None,
) -> Obj:
    """A Table with one row per object."""
    metadata: Obj = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    rows = []
    for obj in objects:
        row: Obj = {"cells": [_cell(column, obj) for column in (_NAME, *resource.columns)]}
        row_object = _row_object(obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(resource),
        "rows": rows,
    }


def wants_table(accept: str) -> bool:
    """Whether an Accept header asks for a Table (kubectl's human-readable get)."""
    for media_range in accept.split(","):
        parameters = {
            part.split("=", 1)[0].strip(): part.split("=", 1)[1].strip()
            for part in media_range.split(";")[1:]
            if "=" in part
        }
        if parameters.get("as") == "Table" and parameters.get("g", "meta.k8s.io") == "meta.k8s.io":
            return True
        if (
            media_range.split(";")[0].strip() in ("application/json", "*/*")
            and "as" not in parameters
        ):
            return False  # plain JSON preferred before any Table
    return False
