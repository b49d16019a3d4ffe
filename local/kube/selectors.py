"""Label and field selectors in Kubernetes' query syntax (``app=x,tier!=db,env in (a,b),!old``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from local.kube.errors import ApiError, bad_request

_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_TOKEN = re.compile(r"\s*(\(|\)|,|!=|==|=|!|[^\s(),!=]+)")


@dataclass(frozen=True)
class Requirement:
    """One clause: ``key <operator> values``."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether a label set satisfies this clause."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" also match objects without the label, as in Kubernetes.
        return not present or value not in self.values


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise bad_request(f"unable to parse requirement: {text!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _check_key(key: str) -> None:
    if not _KEY.match(key) or len(key.split("/")[-1]) > 63:
        raise bad_request(
            f"unable to parse requirement: invalid label key {key!r}: name part must consist of "
            "alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character"
        )


def _check_value(value: str) -> None:
    if not _VALUE.match(value) or len(value) > 63:
        raise bad_request(f"unable to parse requirement: invalid label value: {value!r}")


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse a ``labelSelector`` query parameter; raises a 400 ApiError naming the bad part."""
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    i = 0

    def expect(index: int) -> str:
        if index >= len(tokens):
            raise bad_request(f"unable to parse requirement: unexpected end of selector {text!r}")
        return tokens[index]

    while i < len(tokens):
        token = tokens[i]
        if token == "!":
            key = expect(i + 1)
            _check_key(key)
            requirements.append(Requirement(key, "!"))
            i += 2
        else:
            key = token
            _check_key(key)
            operator = tokens[i + 1] if i + 1 < len(tokens) else ","
            if operator == ",":
                requirements.append(Requirement(key, "exists"))
                i += 1
            elif operator in ("=", "==", "!="):
                value = expect(i + 2) if i + 2 < len(tokens) and tokens[i + 2] != "," else ""
                _check_value(value)
                requirements.append(Requirement(key, "!=" if operator == "!=" else "=", (value,)))
                i += 3 if value else 2
            elif operator in ("in", "notin"):
                if expect(i + 2) != "(":
                    raise bad_request(f"unable to parse requirement: expected '(' after {operator}")
                values: list[str] = []
                i += 3
                while expect(i) != ")":
                    if tokens[i] != ",":
                        _check_value(tokens[i])
                        values.append(tokens[i])
                    i += 1
                requirements.append(Requirement(key, operator, tuple(values)))
                i += 1
            else:
                raise bad_request(
                    f"unable to parse requirement: unknown operator {operator!r} in {text!r}"
                )
        if i < len(tokens):
            if tokens[i] != ",":
                raise bad_request(f"unable to parse requirement: expected ',' in {text!r}")
            i += 1
    return requirements


def labels_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    """Whether an object's labels satisfy every requirement."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


_SELECTABLE_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class FieldRequirement:
    """``metadata.name=x`` or ``metadata.name!=x``."""

    field: str
    value: str
    negated: bool

    def matches(self, obj: dict[str, Any]) -> bool:
        """Whether the object's field equals (or, negated, differs from) the value."""
        actual = (obj.get("metadata") or {}).get(self.field.split(".", 1)[1], "")
        return (actual == self.value) != self.negated


def parse_field_selector(text: str) -> list[FieldRequirement]:
    """Parse a ``fieldSelector``; only metadata.name/namespace are selectable, as for CRDs."""
    requirements: list[FieldRequirement] = []
    for clause in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"([^=!]+?)\s*(==|=|!=)\s*(.*)", clause)
        if match is None:
            raise ApiError(
                400, "BadRequest", f"invalid selector: '{text}'; can't understand '{clause}'"
            )
        field, operator, value = match.groups()
        if field not in _SELECTABLE_FIELDS:
            raise ApiError(
                400,
                "BadRequest",
                f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"',
            )
        requirements.append(FieldRequirement(field, value, operator == "!="))
    return requirements


def fields_match(requirements: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    """Whether an object satisfies every field requirement."""
    return all(r.matches(obj) for r in requirements)
