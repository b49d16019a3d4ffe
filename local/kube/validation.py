"""Generic object validation: names (DNS-1123 / DNS-1035), labels, annotations, metadata types."""

from __future__ import annotations

import json
import re
from typing import Any

from local.kube import errors
from local.kube.errors import FieldError
from local.kube.resources import KNATIVE_GROUP, ResourceType

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_ANNOTATIONS_LIMIT = 256 * 1024


def dns1123_label_errors(value: str) -> list[str]:
    """Why ``value`` is not an RFC 1123 label (empty list when it is)."""
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1123_LABEL, value):
        problems.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            f"'123-abc', regex used for validation is '{_DNS1123_LABEL}')"
        )
    return problems


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Why ``value`` is not an RFC 1123 subdomain (empty list when it is)."""
    problems = []
    if len(value) > 253:
        problems.append("must be no more than 253 characters")
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        problems.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'example.com', regex used for validation is '{_DNS1123_SUBDOMAIN}')"
        )
    return problems


def dns1035_label_errors(value: str) -> list[str]:
    """Why ``value`` is not an RFC 1035 label (empty list when it is)."""
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1035_LABEL, value):
        problems.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character (e.g. "
            f"'my-name',  or 'abc-123', regex used for validation is '{_DNS1035_LABEL}')"
        )
    return problems


def name_errors(resource: ResourceType, name: str) -> list[str]:
    """Name rules per kind: Knative wants DNS-1035 labels, namespaces DNS-1123 labels."""
    if resource.group == KNATIVE_GROUP:
        return dns1035_label_errors(name)
    if resource.plural == "namespaces":
        return dns1123_label_errors(name)
    return dns1123_subdomain_errors(name)


def _qualified_key_errors(key: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    problems = []
    if "/" in prefix:
        problems.append("a qualified name must consist of at most one '/'")
    if prefix and dns1123_subdomain_errors(prefix):
        problems.append("prefix part " + "; ".join(dns1123_subdomain_errors(prefix)))
    if not name or len(name) > 63 or not re.fullmatch(_QUALIFIED_NAME, name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') "
            "and be no more than 63 characters"
        )
    return problems


def _string_map_errors(path: str, value: Any, check_values: bool) -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [errors.invalid(path, value, "must be a map of string keys to string values")]
    found: list[FieldError] = []
    for key, item in value.items():
        for problem in _qualified_key_errors(key):
            found.append(errors.invalid(path, key, problem))
        if not isinstance(item, str):
            found.append(errors.invalid(f"{path}[{key}]", item, "must be a string"))
        elif check_values and (len(item) > 63 or not re.fullmatch(_LABEL_VALUE, item)):
            found.append(
                errors.invalid(
                    f"{path}[{key}]",
                    item,
                    "a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character and be no more than 63 characters",
                )
            )
    return found


def metadata_errors(resource: ResourceType, obj: dict[str, Any]) -> list[FieldError]:
    """Problems with ``metadata``: name, labels, annotations, ownerReferences, finalizers."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return [errors.required("metadata", "must be an object")]
    found: list[FieldError] = []
    name = metadata.get("name")
    if not name:
        found.append(errors.required("metadata.name", "name or generateName is required"))
    elif not isinstance(name, str):
        found.append(errors.invalid("metadata.name", name, "must be a string"))
    else:
        for problem in name_errors(resource, name):
            found.append(errors.invalid("metadata.name", name, problem))
    found += _string_map_errors("metadata.labels", metadata.get("labels"), check_values=True)
    annotations = metadata.get("annotations")
    found += _string_map_errors("metadata.annotations", annotations, check_values=False)
    if isinstance(annotations, dict) and len(json.dumps(annotations)) > _ANNOTATIONS_LIMIT:
        found.append(
            errors.FieldError(
                "metadata.annotations",
                "FieldValueTooLong",
                f"must have at most {_ANNOTATIONS_LIMIT} bytes",
            )
        )
    for field_name in ("ownerReferences", "finalizers"):
        value = metadata.get(field_name)
        if value is not None and not isinstance(value, list):
            found.append(errors.invalid(f"metadata.{field_name}", value, "must be a list"))
    finalizers = metadata.get("finalizers")
    for index, finalizer in enumerate(finalizers if isinstance(finalizers, list) else []):
        if not isinstance(finalizer, str) or _qualified_key_errors(finalizer):
            found.append(
                errors.invalid(
                    f"metadata.finalizers[{index}]", finalizer, "must be a qualified name"
                )
            )
    references = metadata.get("ownerReferences")
    for index, reference in enumerate(references if isinstance(references, list) else []):
        path = f"metadata.ownerReferences[{index}]"
        if not isinstance(reference, dict):
            found.append(errors.invalid(path, reference, "must be an object"))
            continue
        for required_field in ("apiVersion", "kind", "name", "uid"):
            if not reference.get(required_field):
                found.append(errors.required(f"{path}.{required_field}"))
    return found
