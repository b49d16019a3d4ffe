"""Operator requests (abort, promote, pause, resume, approve, rollback, delete), refusals and results."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shared.errors import HekatonError
from shared.phases import COMMANDS

ROLLOUT_COMMANDS = tuple(COMMANDS)  # the edges of the table an operator may ask for
SERVICE_COMMANDS = ("delete",)
MAX_REASON = 500  # characters kept of a reason: a reason is a sentence, not a payload
MAX_PAUSE_SECONDS = 7 * 86_400
# A pause without a deadline of its own ends (rolled back) after this.
DEFAULT_PAUSE_SECONDS = 3600.0
_NOT_ASKED = frozenset({"principal", "key", "origin", "reason"})  # not part of the fingerprint


class Refused(HekatonError):
    """A request hekaton will not apply; `kind` maps to the HTTP status (not_found 404, conflict 409,
    invalid 422) and the reason says why. Nothing was changed."""

    STATUS = {"not_found": 404, "conflict": 409, "invalid": 422}

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    @property
    def status(self) -> int:
        """The HTTP status for this refusal."""
        return self.STATUS[self.kind]


@dataclass(frozen=True)
class CommandRequest:
    """One operator request, with who asked (a verified identity, never the request body) and why."""

    command: str
    principal: str
    key: str  # idempotency key: a Pub/Sub message id, an Idempotency-Key header, a request id
    origin: str  # "api" or "pubsub": keys of different origins never collide
    service: str | None = None  # None: the service of `rollout_id`
    rollout_id: str | None = None  # None: the service's active rollout
    reason: str = ""
    revision: str | None = None  # rollback: target revision name or full digest
    deadline_seconds: float | None = None  # pause: ends (rolled back) after this

    def ask(self) -> dict[str, Any]:
        """What was asked, for the fingerprint (who, why and the key are not part of it)."""
        return {k: v for k, v in asdict(self).items() if k not in _NOT_ASKED}


@dataclass(frozen=True)
class CommandResult:
    """What a request did: applied now, or applied earlier (`repeated`), with its effect."""

    command: str
    service: str
    status: str  # "applied" or "repeated"
    detail: str
    request_id: str
    rollout_id: str | None = None
    phase: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON body the control API answers with."""
        body = asdict(self)
        result = body.pop("result")
        return {**body, **result}


def bounded(text: str | None, limit: int = MAX_REASON) -> str:
    """At most `limit` characters, marked when cut (reasons and details are stored and shown)."""
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"
