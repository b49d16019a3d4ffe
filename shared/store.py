"""The state store boundary: what the steps need from Firestore, as a Protocol."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from shared.model import (
    DeadLetter,
    Decision,
    IgnoredEvent,
    NotifiedMarker,
    RequestRecord,
    Rollout,
    ServiceRecord,
)

T = TypeVar("T")

# A create precondition: the document must not exist yet.
MUST_NOT_EXIST = "must-not-exist"
_RESERVED_ID = re.compile(r"__.*__", re.DOTALL)


def is_document_id(text: str) -> bool:
    """Whether Firestore can hold a document named `text`: non-empty valid UTF-8 of at most 1500
    bytes, no '/', not '.' or '..', not `__...__`. No stored record has any other id, so a read of
    one finds nothing (Store implementations answer None or [] without asking the database)."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return (
        0 < size <= 1500
        and "/" not in text
        and text not in (".", "..")
        and not _RESERVED_ID.fullmatch(text)
    )


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A record plus the opaque version (Firestore update time) a precondition write compares against."""

    value: T
    version: object


@dataclass
class Change:
    """Everything one step decided, written at once: all or nothing, each write preconditioned."""

    rollouts: list[tuple[Rollout, object]] = field(
        default_factory=list
    )  # (record, expected version)
    services: list[tuple[ServiceRecord, object]] = field(default_factory=list)
    decisions: list[tuple[str, Decision]] = field(default_factory=list)  # (rollout id, entry)
    # Operator requests, each created must-not-exist: the change is applied once per request.
    requests: list[RequestRecord] = field(default_factory=list)
    # Notified markers advanced after a publish (record, expected version): only their notified part
    # is written. (The committed part is written by every commit that logs a decision, see below.)
    notified: list[tuple[NotifiedMarker, object]] = field(default_factory=list)

    def empty(self) -> bool:
        """True when there is nothing to write."""
        return not (
            self.rollouts or self.services or self.decisions or self.requests or self.notified
        )

    def committed_markers(self) -> list[NotifiedMarker]:
        """The committed part of each logged rollout's marker, written in the same batch as its entries."""
        services = {rollout.id: rollout.service for rollout, _ in self.rollouts}
        latest: dict[str, Decision] = {}
        for rollout_id, decision in self.decisions:
            if rollout_id not in latest or decision.seq > latest[rollout_id].seq:
                latest[rollout_id] = decision
        return [
            NotifiedMarker(
                rollout_id=rid,
                service=services.get(rid, ""),
                committed_seq=d.seq,
                committed_at=d.at,
            )
            for rid, d in sorted(latest.items())
        ]


# The fields of a marker each kind of write owns: a commit never moves `notified_*`, a notifier
# never moves `committed_*`, so neither overwrites what the other wrote. Both write `behind`: a
# commit sets it (what it logged is not published yet), a notifier clears it when it caught up with
# the `committed_seq` it read (its precondition fails if a commit landed since).
COMMITTED_FIELDS = ("rollout_id", "service", "committed_seq", "committed_at")
NOTIFIED_FIELDS = ("notified_seq", "notified_at")


class Store(Protocol):
    """Services, rollouts, decision logs and ignored events."""

    def get_service(self, name: str) -> Versioned[ServiceRecord] | None:
        """One registered service, or None."""
        ...

    def list_services(
        self, limit: int | None = None, after: str | None = None
    ) -> list[ServiceRecord]:
        """Registered services by name (at most `limit`, those after the name `after`)."""
        ...

    def services_for_repository(self, repository: str) -> list[Versioned[ServiceRecord]]:
        """The services following an image repository."""
        ...

    def services_warm_until(self, before: datetime, limit: int = 50) -> list[ServiceRecord]:
        """Services whose previous revision's warm window ended at or before `before`."""
        ...

    def services_changed_since(self, since: datetime, limit: int = 50) -> list[ServiceRecord]:
        """Services whose record was updated at or after `since` (at most `limit`, newest first)."""
        ...

    def put_service(self, record: ServiceRecord, expected: object | None) -> None:
        """Create (expected=MUST_NOT_EXIST) or update (expected=version) one service."""
        ...

    def get_rollout(self, rollout_id: str) -> Versioned[Rollout] | None:
        """One rollout, or None."""
        ...

    def list_rollouts(
        self, service: str, limit: int = 20, after: str | None = None
    ) -> list[Rollout]:
        """A service's rollouts, newest first (those older than the rollout `after`)."""
        ...

    def active_rollouts(self) -> list[Versioned[Rollout]]:
        """Every rollout not yet in a terminal phase."""
        ...

    def decisions(self, rollout_id: str, after_seq: int = 0) -> list[Decision]:
        """A rollout's decision log, oldest first (entries with seq > after_seq)."""
        ...

    def get_request(self, request_id: str) -> RequestRecord | None:
        """An operator request already applied or refused, or None."""
        ...

    def commit(self, change: Change) -> None:
        """Write a Change atomically; raise PreconditionFailed if any record moved since it was read."""
        ...

    def get_notified(self, rollout_id: str) -> Versioned[NotifiedMarker] | None:
        """A rollout's notified marker, or None (rollouts logged before markers existed)."""
        ...

    def notifications_behind(self, limit: int = 50) -> list[Versioned[NotifiedMarker]]:
        """Markers with committed decisions not yet known to be published (at most `limit`)."""
        ...

    def record_ignored(self, event: IgnoredEvent) -> None:
        """Keep an acknowledged-but-ignored message with its reason (idempotent per message id)."""
        ...

    def list_ignored(self, limit: int = 50, after: str | None = None) -> list[IgnoredEvent]:
        """Recently ignored messages, newest first (those older than the entry with id `after`)."""
        ...

    def count_ignored(self) -> int:
        """How many ignored messages are kept."""
        ...

    def get_dead_letter(self, dead_letter_id: str) -> Versioned[DeadLetter] | None:
        """One kept dead letter, or None."""
        ...

    def put_dead_letter(self, record: DeadLetter, expected: object | None) -> None:
        """Create (expected=MUST_NOT_EXIST) or update (expected=version) one dead letter."""
        ...

    def list_dead_letters(self, limit: int = 50, after: str | None = None) -> list[DeadLetter]:
        """Kept dead letters, newest first (those older than the one with id `after`)."""
        ...
