"""Knative-style status conditions: ``{type, status, reason, message, lastTransitionTime}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local.kube.registry import now

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclass(frozen=True)
class Condition:
    """A condition's desired value; the transition time is kept while ``status`` is unchanged."""

    type: str
    status: str
    reason: str | None = None
    message: str | None = None

    @property
    def is_true(self) -> bool:
        """Whether the condition holds."""
        return self.status == TRUE


def find(obj: dict[str, Any] | None, kind: str) -> Condition | None:
    """The condition ``kind`` of an object's status, or None."""
    if obj is None:
        return None
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == kind:
            return Condition(
                kind,
                str(condition.get("status", UNKNOWN)),
                condition.get("reason"),
                condition.get("message"),
            )
    return None


def status_of(obj: dict[str, Any] | None, kind: str = "Ready") -> str:
    """ "True", "False" or "Unknown" (also when the condition is missing)."""
    found = find(obj, kind)
    return found.status if found else UNKNOWN


def render(previous: list[Any] | None, desired: list[Condition]) -> list[dict[str, Any]]:
    """Conditions as stored, sorted by type; lastTransitionTime moves only when status changes."""
    old = {c.get("type"): c for c in previous or [] if isinstance(c, dict)}
    rendered = []
    for condition in sorted(desired, key=lambda c: c.type):
        before = old.get(condition.type) or {}
        unchanged = before.get("status") == condition.status and before.get("lastTransitionTime")
        entry: dict[str, Any] = {
            "type": condition.type,
            "status": condition.status,
            "lastTransitionTime": before["lastTransitionTime"] if unchanged else now(),
        }
        if condition.reason:
            entry["reason"] = condition.reason
        if condition.message:
            entry["message"] = condition.message
        rendered.append(entry)
    return rendered


def aggregate(kind: str, dependents: list[Condition]) -> Condition:
    """The "happy" condition: True if all dependents are; else the first False, else first Unknown."""
    for condition in dependents:
        if condition.status == FALSE:
            return Condition(kind, FALSE, condition.reason, condition.message)
    for condition in dependents:
        if condition.status != TRUE:
            return Condition(kind, UNKNOWN, condition.reason, condition.message)
    return Condition(kind, TRUE)
