"""The notification CloudEvent: one per decision-log entry of a rollout, on topic `hekaton-events`.

Schema (structured-mode CloudEvent, JSON in the Pub/Sub message body):

- ``type``: ``dev.hekaton.rollout.transition.v1``
- ``source``: ``//hekaton.dev/functions/<function that committed the decision>``
- ``id``: ``<rollout id>-<seq, 4 digits>``: deterministic, so a redelivered step (or a re-publish by
  the sweep) gives the same id and a consumer dedupes on it
- ``subject``: ``rollouts/<rollout id>``
- ``time``: when the decision was made (the entry's ``at``)
- ``data``: ``service``, ``rollout_id``, ``seq``, ``phase_from`` ("" for a birth), ``phase_to``,
  ``outcome``, ``reason``, ``image`` (``repo:tag@digest`` or ""), ``revision``,
  ``traffic_percent`` (the candidate's share after the decision), ``at``, ``message_id`` (what
  caused it) and ``figures``: a bounded excerpt of the entry's measured values and thresholds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from events import jsontext
from events.errors import MalformedEvent

SPEC_VERSION = "1.0"
SOURCE_PREFIX = "//hekaton.dev/functions/"
TRANSITION_TYPE = "dev.hekaton.rollout.transition.v1"
EVENTS_TOPIC = "hekaton-events"

# Bounds of the figures excerpt: a notification is a pointer to the decision log, not a copy of it.
MAX_FIGURES = 12
MAX_FIGURE_CHARS = 120
MAX_REASON_CHARS = 1000

_TEXT_FIELDS = ("service", "rollout_id", "phase_to", "outcome", "reason", "at")
_OPTIONAL_TEXT = ("phase_from", "image", "revision", "message_id")


def transition_id(rollout_id: str, seq: int) -> str:
    """The event id of a rollout's decision `seq`: the same however often it is published."""
    return f"{rollout_id}-{seq:04d}"


def _scalar(value: Any) -> Any:
    """A figure as it goes into the excerpt: JSON scalars kept, anything else as bounded text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_FIGURE_CHARS else text[: MAX_FIGURE_CHARS - 1] + "…"


def figures_excerpt(values: dict[str, Any], thresholds: dict[str, Any]) -> dict[str, Any]:
    """At most MAX_FIGURES of the entry's values and thresholds (thresholds prefixed), each bounded."""
    items = [(str(k), v) for k, v in sorted(values.items())]
    items += [(f"threshold.{k}", v) for k, v in sorted(thresholds.items())]
    excerpt = {k: _scalar(v) for k, v in items[:MAX_FIGURES]}
    if len(items) > MAX_FIGURES:
        excerpt["truncated"] = len(items) - MAX_FIGURES
    return excerpt


@dataclass(frozen=True)
class TransitionEvent:
    """One decision of a rollout, as told to whoever listens on `hekaton-events`."""

    service: str
    rollout_id: str
    seq: int
    phase_from: str
    phase_to: str
    outcome: str
    reason: str
    at: str  # ISO 8601
    image: str = ""
    revision: str = ""
    traffic_percent: int = 0
    message_id: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the function that committed it

    @property
    def id(self) -> str:
        """Deterministic: rollout id and seq."""
        return transition_id(self.rollout_id, self.seq)

    def envelope(self) -> dict[str, Any]:
        """The structured-mode CloudEvent as a dict."""
        data = asdict(self)
        del data["source"]
        if len(data["reason"]) > MAX_REASON_CHARS:
            data["reason"] = data["reason"][: MAX_REASON_CHARS - 1] + "…"
        return {
            "specversion": SPEC_VERSION,
            "type": TRANSITION_TYPE,
            "source": SOURCE_PREFIX + (self.source or "unknown"),
            "id": self.id,
            "time": self.at,
            "datacontenttype": "application/json",
            "subject": f"rollouts/{self.rollout_id}",
            "data": data,
        }

    def to_json(self) -> bytes:
        """The Pub/Sub message body."""
        return json.dumps(self.envelope(), separators=(",", ":"), sort_keys=True).encode()

    def line(self) -> str:
        """One human line (what the webhook sink posts)."""
        moved = f"{self.phase_from} → {self.phase_to}" if self.phase_from else f"→ {self.phase_to}"
        parts = [f"{self.service}: rollout {self.rollout_id} #{self.seq} {moved} ({self.outcome})"]
        if self.image:
            parts.append(self.image.rsplit("/", 1)[-1])
        parts.append(f"traffic {self.traffic_percent}%")
        text = " · ".join(parts)
        reason = self.reason if len(self.reason) <= 300 else self.reason[:299] + "…"
        return f"{text}: {reason}" if reason else text


def parse_transition(body: bytes) -> TransitionEvent:
    """Parse a `hekaton-events` message body; refuse anything that is not a valid transition event."""
    envelope = jsontext.loads(body, "transition event")
    if not isinstance(envelope, dict):
        raise MalformedEvent("transition event is not a JSON object")
    if envelope.get("specversion") != SPEC_VERSION:
        raise MalformedEvent(
            f"transition event has specversion {envelope.get('specversion')!r}; expected 1.0"
        )
    if envelope.get("type") != TRANSITION_TYPE:
        raise MalformedEvent(f"unknown CloudEvent type {envelope.get('type')!r}")
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise MalformedEvent("transition event has no object 'data'")
    for name in _TEXT_FIELDS:
        if not isinstance(data.get(name), str) or (name != "reason" and not data[name]):
            raise MalformedEvent(f"transition event data.{name} must be a non-empty string")
    for name in _OPTIONAL_TEXT:
        if not isinstance(data.get(name, ""), str):
            raise MalformedEvent(f"transition event data.{name} must be a string")
    for name in ("seq", "traffic_percent"):
        value = data.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MalformedEvent(f"transition event data.{name} must be a non-negative integer")
    if data["seq"] < 1:
        raise MalformedEvent("transition event data.seq must be at least 1")
    figures = data.get("figures", {})
    if not isinstance(figures, dict):
        raise MalformedEvent("transition event data.figures must be an object")
    source = str(envelope.get("source", ""))
    event = TransitionEvent(
        service=data["service"],
        rollout_id=data["rollout_id"],
        seq=data["seq"],
        phase_from=data.get("phase_from", ""),
        phase_to=data["phase_to"],
        outcome=data["outcome"],
        reason=data["reason"],
        at=data["at"],
        image=data.get("image", ""),
        revision=data.get("revision", ""),
        traffic_percent=data["traffic_percent"],
        message_id=data.get("message_id", ""),
        figures=figures,
        source=source.removeprefix(SOURCE_PREFIX),
    )
    if envelope.get("id") != event.id:
        raise MalformedEvent(f"transition event id {envelope.get('id')!r} is not {event.id!r}")
    return event
