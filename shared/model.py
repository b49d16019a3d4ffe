"""The records hekaton keeps: registered services, rollouts and their decision logs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.phases import Phase


@dataclass(frozen=True)
class ServiceRecord:
    """A registered service: its spec plus what hekaton knows it serves."""

    name: str
    spec: dict[str, Any]
    stable_revision: str | None = None
    stable_image: str | None = None
    stable_digest: str | None = None
    active_rollout_id: str | None = None
    registered_at: datetime | None = None
    updated_at: datetime | None = None
    # Set by DELETE /services/NAME: its Knative Service is gone, its history stays readable, and a
    # push no longer deploys it (until it is registered again).
    deleted_at: datetime | None = None
    deleted_by: str | None = None
    updated_by: str | None = None  # who last registered the spec (a verified principal)
    # The stable revision before the last promotion, kept routed (0 %, tag `previous`) and warm
    # until `previous_warm_until`, when the tick's sweep releases it (shared/steps/warm_window.py).
    previous_revision: str | None = None
    previous_warm_until: datetime | None = None

    @property
    def namespace(self) -> str:
        """Kubernetes namespace of the Knative Service."""
        return str(self.spec.get("namespace", "default"))

    @property
    def repository(self) -> str:
        """The image repository whose pushes this service follows."""
        return str(self.spec["image"])

    def to_document(self) -> dict[str, Any]:
        """Firestore document fields."""
        return asdict(self)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ServiceRecord:
        """Build from a Firestore document."""
        values: dict[str, Any] = {k: doc.get(k) for k in cls.__dataclass_fields__ if k in doc}
        return cls(**values)

    def evolve(self, **changes: Any) -> ServiceRecord:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Rollout:
    """One attempt to move a service onto a new image."""

    id: str
    service: str
    namespace: str
    image: str  # repository
    digest: str
    revision: str
    phase: Phase
    created_at: datetime
    updated_at: datetime
    tag: str | None = None
    steps: list[int] = field(default_factory=list)
    step_index: int = 0
    # In SHIFTING: whether steps[step_index] % is already applied (then we are baking until due_at).
    step_applied: bool = False
    traffic_percent: int = 0  # the candidate's share as last set by hekaton
    stable_revision: str | None = None  # where traffic returns on failure
    reason: str | None = None
    due_at: datetime | None = None  # when the next step should run (None: nothing scheduled)
    emitted_at: datetime | None = None  # when the next step's event was last published
    ready_deadline_at: datetime | None = None
    # The current phase's own deadline (validation warm-up, a pause, the approval gate): when it
    # passes, the engine ends the phase along its deadline edge (phases.DEADLINE_OUTCOMES).
    deadline_at: datetime | None = None
    # Validation's warm-up: when the first attempt ran, and how many have run (each one wake-up).
    validation_started_at: datetime | None = None
    validation_attempts: int = 0
    ended_at: datetime | None = None
    pushed_at: datetime | None = None  # registry publish time: orders pushes that race each other
    cause: str = ""  # id of the registry message that started it
    # "push": started by a registry push; "rollback": an operator rollback with nothing in flight.
    kind: str = "push"
    # Number of decisions logged so far (orders the log, makes entry ids deterministic).
    seq: int = 0
    # The service spec as it was when the rollout started: a rollout is judged by the rules it began
    # with, even if the service is re-registered meanwhile ({} for records from before snapshots).
    spec: dict[str, Any] = field(default_factory=dict)
    # Who approved promotion at the spec's approval gate (None: not approved, or no gate).
    approved_by: str | None = None
    # The canary analysis' running state (judge state, window start, last figures); {} before traffic.
    analysis: dict[str, Any] = field(default_factory=dict)
    # Set at promotion: until when the stable revision it replaced stays routed at 0 % and warm.
    previous_warm_until: datetime | None = None

    @property
    def active(self) -> bool:
        """True until the rollout reaches a terminal phase."""
        return not self.phase.terminal

    @property
    def image_ref(self) -> str:
        """`repo:tag@sha256:...` as users know it ('' when unknown, e.g. a rollback record)."""
        if not self.image:
            return ""
        return (
            f"{self.image}:{self.tag}@{self.digest}" if self.tag else f"{self.image}@{self.digest}"
        )

    @property
    def image_short(self) -> str:
        """`iris:v2 (sha256:92834a8e835c)`: enough to recognise an image in a log line."""
        name = self.image.rsplit("/", 1)[-1]
        label = f"{name}:{self.tag}" if self.tag else name
        return f"{label} ({self.digest[:19]})" if self.digest else label

    def to_document(self) -> dict[str, Any]:
        """Firestore document fields (every field present, so an update rewrites all of them)."""
        doc = asdict(self)
        doc["phase"] = self.phase.value
        doc["active"] = self.active
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Rollout:
        """Build from a Firestore document."""
        values: dict[str, Any] = {k: doc.get(k) for k in cls.__dataclass_fields__ if k in doc}
        values["phase"] = Phase(values["phase"])
        values["steps"] = list(values.get("steps") or [])
        values["spec"] = dict(values.get("spec") or {})
        values["analysis"] = dict(values.get("analysis") or {})
        return cls(**values)

    def evolve(self, **changes: Any) -> Rollout:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Decision:
    """One entry of a rollout's decision log: what was decided, on what evidence, caused by which message."""

    id: str
    seq: int
    at: datetime
    phase_from: str
    phase_to: str
    outcome: str
    reason: str
    step_index: int = 0
    values: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    message_id: str = ""
    # The candidate's share right after this decision (None in entries written before it was kept):
    # a notification re-published later tells what the decision did, not what the rollout is now.
    traffic_percent: int | None = None

    def to_document(self) -> dict[str, Any]:
        """Firestore document fields."""
        return asdict(self)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Decision:
        """Build from a Firestore document."""
        values: dict[str, Any] = {k: doc.get(k) for k in cls.__dataclass_fields__ if k in doc}
        return cls(**values)


@dataclass(frozen=True)
class NotifiedMarker:
    """`notifications/{rollout}`: how far a rollout's decision log is committed and published.

    Every commit that logs a decision raises `committed_seq` in the same write; publishing those
    decisions on `hekaton-events` raises `notified_seq` (with a precondition). A marker behind its
    log is what a crash between the commit and the publish leaves: the tick's sweep catches it up.
    """

    rollout_id: str
    service: str = ""
    committed_seq: int = 0
    committed_at: datetime | None = None
    notified_seq: int = 0
    notified_at: datetime | None = None

    @property
    def behind(self) -> bool:
        """True while some committed decision is not known to be published."""
        return self.notified_seq < self.committed_seq

    def to_document(self) -> dict[str, Any]:
        """Firestore document fields (`behind` stored, so the sweep can query it)."""
        return {**asdict(self), "behind": self.behind}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> NotifiedMarker:
        """Build from a Firestore document."""
        values: dict[str, Any] = {k: doc.get(k) for k in cls.__dataclass_fields__ if k in doc}
        return cls(**values)

    def evolve(self, **changes: Any) -> NotifiedMarker:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class IgnoredEvent:
    """A message hekaton acknowledged without acting on it, and why."""

    message_id: str
    function: str
    reason: str
    at: datetime
    excerpt: str = ""
    topic: str | None = None
    # Firestore's TTL policy (deploy.sh) deletes the record some time after this instant.
    expires_at: datetime | None = None

    @property
    def id(self) -> str:
        """The record's id: one per function and message (Firestore-safe: no '/' or NUL, valid UTF-8,
        at most 1500 bytes; the `function-` prefix keeps it from being '..' or `__x__`)."""
        text = f"{self.function}-{self.message_id}".replace("/", "_").replace("\x00", "_")
        # Firestore's limit is 1500 bytes, not characters.
        return text.encode("utf-8", "backslashreplace")[:1500].decode("utf-8", "ignore")

    def to_document(self) -> dict[str, Any]:
        """Firestore document fields."""
        return asdict(self)


@dataclass(frozen=True)
class RequestRecord:
    """An operator request applied (or refused) once: created must-not-exist with the change it made.

    Its id is derived from the request's idempotency key (a Pub/Sub message id, an Idempotency-Key
    header, a request id), so a redelivery finds it and gets the same answer instead of acting twice.
    """

    id: str
    key: str  # the idempotency key as given (bounded)
    command: str  # "rollback", "abort", "promote", ...
    service: str
    at: datetime
    status: str  # "applied" or "refused"
    principal: str = ""  # who asked: the verified identity (or the publishing system)
    reason: str = ""  # why they asked
    detail: str = ""  # what happened, or why it was refused
    rollout_id: str | None = None
    fingerprint: str = ""  # what was asked, so a key reused for another request is noticed
    result: dict[str, Any] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        """Firestore document fields."""
        return asdict(self)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> RequestRecord:
        """Build from a Firestore document."""
        values: dict[str, Any] = {k: doc.get(k) for k in cls.__dataclass_fields__ if k in doc}
        values["result"] = dict(values.get("result") or {})
        return cls(**values)


@dataclass(frozen=True)
class Replay:
    """One republication of a dead letter to its original topic: when, by whom, the new message id."""

    at: datetime
    principal: str
    message_id: str
    topic: str
    forced: bool = False


@dataclass(frozen=True)
class ReplayClaim:
    """A replay under way (claimed before it publishes): by whom and since when."""

    at: datetime
    principal: str


@dataclass(frozen=True)
class DeadLetter:
    """A message Pub/Sub gave up on after the subscription's delivery attempts, kept for replay.

    `data` is the whole original payload (what a replay republishes); `excerpt` is its bounded,
    printable start for listings. `data` is None when the payload was too large to keep.
    """

    id: str
    message_id: str  # of the dead letter (Pub/Sub gives the forwarded copy a new id)
    source_subscription: str | None
    original_topic: str | None  # from the subscription, via the manifest; None: not ours
    attempts: int | None
    first_seen: datetime
    last_seen: datetime
    attributes: dict[str, str] = field(default_factory=dict)  # the original's, as delivered
    excerpt: str = ""
    data: bytes | None = None
    size: int = 0  # bytes of the original payload
    published_at: str | None = None  # when the original was published to its topic
    replay_of: str | None = None  # the dead letter this message was a replay of
    replays: tuple[Replay, ...] = ()
    replay_claim: ReplayClaim | None = None  # a replay publishing now (none once recorded)

    def to_document(self) -> dict[str, Any]:
        """Firestore document fields."""
        doc = asdict(self)
        doc["replays"] = [asdict(r) for r in self.replays]
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> DeadLetter:
        """Build from a Firestore document."""
        values: dict[str, Any] = {k: doc.get(k) for k in cls.__dataclass_fields__ if k in doc}
        values["attributes"] = {str(k): str(v) for k, v in (values.get("attributes") or {}).items()}
        values["replays"] = tuple(Replay(**r) for r in values.get("replays") or ())
        claim = values.get("replay_claim")
        values["replay_claim"] = ReplayClaim(**claim) if claim else None
        return cls(**values)
