"""Decoding of the Kubernetes protobuf bodies kubectl sends for built-in kinds (Namespace,
DeleteOptions, access reviews): the ``k8s\\0`` envelope (``runtime.Unknown``) and just the messages we serve."""

from __future__ import annotations

from typing import Any

from local.kube import errors

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"

# Field number -> (JSON name, type, nested schema). Types: string, int, bool, message,
# strings (repeated string), messages (repeated message), map (map<string,string>).
Schema = dict[int, tuple[str, str, Any]]

_OWNER_REFERENCE: Schema = {
    1: ("kind", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    5: ("apiVersion", "string", None),
    6: ("controller", "bool", None),
    7: ("blockOwnerDeletion", "bool", None),
}
_OBJECT_META: Schema = {
    1: ("name", "string", None),
    2: ("generateName", "string", None),
    3: ("namespace", "string", None),
    5: ("uid", "string", None),
    6: ("resourceVersion", "string", None),
    7: ("generation", "int", None),
    11: ("labels", "map", None),
    12: ("annotations", "map", None),
    13: ("ownerReferences", "messages", _OWNER_REFERENCE),
    14: ("finalizers", "strings", None),
}
_NAMESPACE: Schema = {
    1: ("metadata", "message", _OBJECT_META),
    2: ("spec", "message", {1: ("finalizers", "strings", None)}),
}
_DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", "int", None),
    2: (
        "preconditions",
        "message",
        {1: ("uid", "string", None), 2: ("resourceVersion", "string", None)},
    ),
    3: ("orphanDependents", "bool", None),
    4: ("propagationPolicy", "string", None),
    5: ("dryRun", "strings", None),
}
# authorization.k8s.io/v1 (what `kubectl auth can-i` sends).
_RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", "string", None),
    2: ("verb", "string", None),
    3: ("group", "string", None),
    4: ("version", "string", None),
    5: ("resource", "string", None),
    6: ("subresource", "string", None),
    7: ("name", "string", None),
}
_REVIEW_SPEC: Schema = {
    1: ("resourceAttributes", "message", _RESOURCE_ATTRIBUTES),
    3: ("user", "string", None),
    4: ("groups", "strings", None),
}
_REVIEW: Schema = {
    1: ("metadata", "message", _OBJECT_META),
    2: ("spec", "message", _REVIEW_SPEC),
}
_SCHEMAS: dict[str, Schema] = {
    "Namespace": _NAMESPACE,
    "DeleteOptions": _DELETE_OPTIONS,
    "SelfSubjectAccessReview": _REVIEW,
    "SubjectAccessReview": _REVIEW,
}


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, position


def _fields(data: bytes) -> list[tuple[int, Any]]:
    """(field number, raw value) pairs; length-delimited values stay bytes."""
    found: list[tuple[int, Any]] = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        value: Any
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type == 2:
            length, position = _varint(data, position)
            value = data[position : position + length]
            if len(value) != length:
                raise ValueError("truncated field")
            position += length
        elif wire_type == 1:
            value, position = data[position : position + 8], position + 8
        elif wire_type == 5:
            value, position = data[position : position + 4], position + 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        found.append((number, value))
    return found


def _decode(data: bytes, schema: Schema) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        name, kind, nested = schema[number]
        if kind == "string":
            if value:  # proto3 sends empty strings; JSON omits them
                result[name] = bytes(value).decode()
        elif kind == "int":
            result[name] = value - (1 << 64) if value >= 1 << 63 else value
        elif kind == "bool":
            result[name] = bool(value)
        elif kind == "message":
            result[name] = _decode(value, nested)
        elif kind == "messages":
            result.setdefault(name, []).append(_decode(value, nested))
        elif kind == "strings":
            result.setdefault(name, []).append(bytes(value).decode())
        elif kind == "map":
            entry = _decode(value, {1: ("key", "string", None), 2: ("value", "string", None)})
            result.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
    return result


def decode(body: bytes) -> dict[str, Any]:
    """A JSON-shaped object from a protobuf request body; 415 for kinds we cannot decode."""
    if not body.startswith(_MAGIC):
        raise errors.bad_request("protobuf body does not start with the k8s envelope prefix")
    try:
        envelope = _decode(
            body[len(_MAGIC) :],
            {
                1: (
                    "typeMeta",
                    "message",
                    {1: ("apiVersion", "string", None), 2: ("kind", "string", None)},
                ),
                2: ("raw", "bytes", None),
            },
        )
        raw = next((value for number, value in _fields(body[len(_MAGIC) :]) if number == 2), b"")
        type_meta = envelope.get("typeMeta", {})
        kind = type_meta.get("kind", "")
        schema = _SCHEMAS.get(kind)
        if schema is None:
            raise errors.unsupported_media_type(
                f"{MEDIA_TYPE} ({kind or 'unknown kind'})", ["application/json"]
            )
        obj = _decode(raw, schema)
    except ValueError as error:
        raise errors.bad_request(f"malformed protobuf body: {error}") from error
    if type_meta.get("apiVersion"):
        obj["apiVersion"] = type_meta["apiVersion"]
    obj["kind"] = kind
    return obj
