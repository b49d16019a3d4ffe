"""The CloudEvents hekaton emits to chain its steps: one type per step, carried as structured JSON in Pub/Sub."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from events import jsontext
from events.errors import MalformedEvent

SPEC_VERSION = "1.0"
SOURCE_PREFIX = "//hekaton.dev/functions/"
# What hekaton names rollouts and services (see shared/steps/ingest.py and the spec's `name`).
ROLLOUT_ID = re.compile(r"[a-z0-9]([-a-z0-9]{0,98}[a-z0-9])?")
SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")  # a spec's name: <= 40
MAX_CAUSE = 1500  # characters of the message id a step was caused by


class StepType(StrEnum):
    """Each step of a rollout, as a versioned reverse-DNS CloudEvent type, with its Pub/Sub topic."""

    DEPLOY = "dev.hekaton.rollout.deploy.v1"
    WAIT_READY = "dev.hekaton.rollout.wait_ready.v1"
    VALIDATE = "dev.hekaton.rollout.validate.v1"
    SHIFT = "dev.hekaton.rollout.shift.v1"
    PROMOTE = "dev.hekaton.rollout.promote.v1"

    @property
    def topic(self) -> str:
        """The Pub/Sub topic that triggers the function for this step."""
        return STEP_TOPICS[self]


STEP_TOPICS: dict[StepType, str] = {
    StepType.DEPLOY: "hekaton-deploy",
    StepType.WAIT_READY: "hekaton-wait-ready",
    StepType.VALIDATE: "hekaton-validate",
    StepType.SHIFT: "hekaton-shift",
    StepType.PROMOTE: "hekaton-promote",
}

# Topics fed from outside the chain.
REGISTRY_TOPIC = "gcr"
TICK_TOPIC = "hekaton-tick"
ROLLBACK_TOPIC = "hekaton-rollback"
DEAD_LETTER_TOPIC = "hekaton-dead-letter"


@dataclass(frozen=True)
class StepEvent:
    """ "Run step X of rollout R": what each function receives; handlers check it still applies."""

    type: StepType
    rollout_id: str
    service: str
    phase: str  # the phase the rollout must still be in for this event to apply
    step_index: int
    cause: str  # id of the message that led here, kept in the decision log
    id: str = ""
    time: str = ""

    def to_json(self, source: str, *, traceparent: str | None = None) -> bytes:
        """Serialise as a structured-mode CloudEvent (JSON), the Pub/Sub message body (with the
        `traceparent` extension when given)."""
        envelope: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "type": self.type.value,
            "source": SOURCE_PREFIX + source,
            "id": self.id or uuid.uuid4().hex,
            "time": self.time or datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "subject": f"rollouts/{self.rollout_id}",
            "data": {
                "rollout_id": self.rollout_id,
                "service": self.service,
                "phase": self.phase,
                "step_index": self.step_index,
                "cause": self.cause,
            },
        }
        if traceparent:
            envelope["traceparent"] = traceparent
        return json.dumps(envelope, separators=(",", ":")).encode()

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for logs and tests)."""
        data = asdict(self)
        data["type"] = self.type.value
        return data


def parse_step_event(body: bytes, *, expected: StepType) -> StepEvent:
    """Parse a structured CloudEvent from a Pub/Sub message body; refuse other types or bad fields."""
    envelope = jsontext.loads(body, "step event")
    if not isinstance(envelope, dict):
        raise MalformedEvent("step event is not a JSON object")
    if envelope.get("specversion") != SPEC_VERSION:
        raise MalformedEvent(
            f"step event has specversion {envelope.get('specversion')!r}; expected 1.0"
        )
    type_text = envelope.get("type")
    try:
        event_type = StepType(str(type_text))
    except ValueError as exc:
        raise MalformedEvent(f"unknown CloudEvent type {type_text!r}") from exc
    if event_type is not expected:
        raise MalformedEvent(
            f"CloudEvent type {type_text!r} delivered to the {expected.name.lower()} step"
        )
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise MalformedEvent("step event has no object 'data'")
    for name in ("rollout_id", "service", "phase", "cause"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise MalformedEvent(f"step event data.{name} must be a non-empty string")
    # These two name Firestore documents: anything else than the ids hekaton makes is refused here.
    if not ROLLOUT_ID.fullmatch(data["rollout_id"]):
        raise MalformedEvent(
            f"step event data.rollout_id {data['rollout_id'][:80]!r} is not a rollout id"
            " (lower-case letters, digits and '-', at most 100)"
        )
    if not SERVICE_NAME.fullmatch(data["service"]):
        raise MalformedEvent(
            f"step event data.service {data['service'][:80]!r} is not a service name (a DNS-1035 label)"
        )
    if len(data["cause"]) > MAX_CAUSE:
        raise MalformedEvent(f"step event data.cause is longer than {MAX_CAUSE} characters")
    step_index = data.get("step_index")
    if not isinstance(step_index, int) or isinstance(step_index, bool) or step_index < 0:
        raise MalformedEvent("step event data.step_index must be a non-negative integer")
    return StepEvent(
        type=event_type,
        rollout_id=data["rollout_id"],
        service=data["service"],
        phase=data["phase"],
        step_index=step_index,
        cause=data["cause"],
        id=str(envelope.get("id", "")),
        time=str(envelope.get("time", "")),
    )
