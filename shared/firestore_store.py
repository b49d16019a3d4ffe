"""The Store on Firestore: preconditioned batch writes (never contended transactions, see DESIGN §4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.api_core import exceptions as google_errors
from google.api_core.retry import Retry, if_transient_error
from google.cloud import firestore

from shared import metering
from shared.errors import PermanentError, PreconditionFailed, RetryableError
from shared.logs import get_logger
from shared.model import (
    DeadLetter,
    Decision,
    IgnoredEvent,
    NotifiedMarker,
    RequestRecord,
    Rollout,
    ServiceRecord,
)
from shared.store import (
    COMMITTED_FIELDS,
    MUST_NOT_EXIST,
    NOTIFIED_FIELDS,
    Change,
    Versioned,
    is_document_id,
)

SERVICES = "services"
ROLLOUTS = "rollouts"
DECISIONS = "decisions"  # subcollection of each rollout: keeps the rollout document small
IGNORED = "ignored"
REQUESTS = "requests"  # operator requests, one document per idempotency key
DEAD_LETTERS = "dead_letters"
NOTIFICATIONS = "notifications"  # one marker per rollout: committed and published decision seqs

_TRANSIENT = (
    google_errors.ServiceUnavailable,
    google_errors.DeadlineExceeded,
    google_errors.InternalServerError,
    google_errors.Aborted,
    google_errors.TooManyRequests,
    google_errors.RetryError,  # the call's retries ran out of time
)
# What an unreachable or stalled Firestore looks like (the rest of _TRANSIENT is contention).
_DOWN = (google_errors.ServiceUnavailable, google_errors.DeadlineExceeded, google_errors.RetryError)
log = get_logger("firestore")


class FirestoreStore:
    """Store backed by a Firestore database (the emulator locally)."""

    def __init__(self, client: firestore.Client, *, timeout_seconds: float = 5.0) -> None:
        self._db = client
        self._timeout = timeout_seconds
        self._emulator_host: str | None = getattr(client, "_emulator_host", None)
        # Every call gets a deadline and retries transient errors only until it: an unreachable or
        # stalled Firestore is a RetryableError within about the timeout, never a silent wait (the
        # client's default retry would keep going for 60 s and more).
        self._opts: dict[str, Any] = {
            "retry": Retry(
                predicate=if_transient_error,
                initial=0.1,
                maximum=1.0,
                multiplier=2.0,
                timeout=timeout_seconds,
            ),
            "timeout": timeout_seconds,
        }

    @classmethod
    def for_project(cls, project: str, *, timeout_seconds: float = 5.0) -> FirestoreStore:
        """Connect to the project's default database (honours FIRESTORE_EMULATOR_HOST)."""
        return cls(firestore.Client(project=project), timeout_seconds=timeout_seconds)

    # services -----------------------------------------------------------------------------
    def get_service(self, name: str) -> Versioned[ServiceRecord] | None:
        """One registered service, or None."""
        if not is_document_id(name):
            return None
        snap = self._call(lambda: self._db.collection(SERVICES).document(name).get(**self._opts))
        if not snap.exists:
            return None
        return Versioned(ServiceRecord.from_document(_fields(snap)), snap.update_time)

    def list_services(
        self, limit: int | None = None, after: str | None = None
    ) -> list[ServiceRecord]:
        """Registered services by name (at most `limit`, those after the name `after`)."""
        query = self._db.collection(SERVICES).order_by("name")
        if after is not None:
            query = query.start_after({"name": after})
        if limit is not None:
            query = query.limit(limit)
        snaps = self._call(lambda: list(query.stream(**self._opts)))
        return [ServiceRecord.from_document(_fields(s)) for s in snaps]

    def services_for_repository(self, repository: str) -> list[Versioned[ServiceRecord]]:
        """The services following an image repository."""
        query = self._db.collection(SERVICES).where(
            filter=firestore.FieldFilter("spec.image", "==", repository)
        )
        snaps = self._call(lambda: list(query.stream(**self._opts)))
        return [Versioned(ServiceRecord.from_document(_fields(s)), s.update_time) for s in snaps]

    def services_warm_until(self, before: datetime, limit: int = 50) -> list[ServiceRecord]:
        """Services whose previous revision's warm window ended at or before `before` (earliest first)."""
        return self._services_where(
            "previous_warm_until", "<=", before, limit, firestore.Query.ASCENDING
        )

    def services_changed_since(self, since: datetime, limit: int = 50) -> list[ServiceRecord]:
        """Services whose record was updated at or after `since` (at most `limit`, newest first)."""
        # Newest first: past the limit, the services left out are those changed longest ago, not
        # the ones most likely to need the tick (a late write lands just after a rollout ends).
        return self._services_where("updated_at", ">=", since, limit, firestore.Query.DESCENDING)

    def _services_where(
        self, field: str, op: str, value: datetime, limit: int, direction: str
    ) -> list[ServiceRecord]:
        """Services matching one range filter on a time field, ordered by it (a single-field index: no setup)."""
        query = (
            self._db.collection(SERVICES)
            .where(filter=firestore.FieldFilter(field, op, value))
            .order_by(field, direction=direction)
            .limit(limit)
        )
        return [
            ServiceRecord.from_document(_fields(s))
            for s in self._call(lambda: list(query.stream()))
        ]

    def put_service(self, record: ServiceRecord, expected: object | None) -> None:
        """Create (expected=MUST_NOT_EXIST) or update (expected=version) one service."""
        self.commit(Change(services=[(record, expected)]))

    # rollouts -----------------------------------------------------------------------------
    def get_rollout(self, rollout_id: str) -> Versioned[Rollout] | None:
        """One rollout, or None."""
        if not is_document_id(rollout_id):
            return None
        snap = self._call(
            lambda: self._db.collection(ROLLOUTS).document(rollout_id).get(**self._opts)
        )
        if not snap.exists:
            return None
        return Versioned(Rollout.from_document(_fields(snap)), snap.update_time)

    def list_rollouts(
        self, service: str, limit: int = 20, after: str | None = None
    ) -> list[Rollout]:
        """A service's rollouts, newest first (composite index: service ASC, created_at DESC)."""
        query = (
            self._db.collection(ROLLOUTS)
            .where(filter=firestore.FieldFilter("service", "==", service))
            .order_by("created_at", direction=firestore.Query.DESCENDING)
        )
        if after is not None:
            if not is_document_id(after):
                return []
            cursor = self._call(
                lambda: self._db.collection(ROLLOUTS).document(after).get(**self._opts)
            )
            if not cursor.exists:
                return []
            query = query.start_after(cursor)
        query = query.limit(limit)
        return [
            Rollout.from_document(_fields(s))
            for s in self._call(lambda: list(query.stream(**self._opts)))
        ]

    def active_rollouts(self) -> list[Versioned[Rollout]]:
        """Every rollout not yet in a terminal phase."""
        query = self._db.collection(ROLLOUTS).where(
            filter=firestore.FieldFilter("active", "==", True)
        )
        return [
            Versioned(Rollout.from_document(_fields(s)), s.update_time)
            for s in self._call(lambda: list(query.stream(**self._opts)))
        ]

    def decisions(self, rollout_id: str, after_seq: int = 0) -> list[Decision]:
        """A rollout's decision log, oldest first (entries with seq > after_seq)."""
        if not is_document_id(rollout_id):
            return []
        log = self._db.collection(ROLLOUTS).document(rollout_id).collection(DECISIONS)
        query = log.order_by("seq")
        if after_seq:
            query = log.where(filter=firestore.FieldFilter("seq", ">", after_seq)).order_by("seq")
        return [
            Decision.from_document(_fields(s))
            for s in self._call(lambda: list(query.stream(**self._opts)))
        ]

    def get_request(self, request_id: str) -> RequestRecord | None:
        """An operator request already applied or refused, or None."""
        if not is_document_id(request_id):
            return None
        snap = self._call(
            lambda: self._db.collection(REQUESTS).document(request_id).get(**self._opts)
        )
        return RequestRecord.from_document(_fields(snap)) if snap.exists else None

    def get_notified(self, rollout_id: str) -> Versioned[NotifiedMarker] | None:
        """A rollout's notified marker, or None (rollouts logged before markers existed)."""
        snap = self._call(self._db.collection(NOTIFICATIONS).document(rollout_id).get)
        if not snap.exists:
            return None
        return Versioned(NotifiedMarker.from_document(_fields(snap)), snap.update_time)

    def notifications_behind(self, limit: int = 50) -> list[Versioned[NotifiedMarker]]:
        """Markers with committed decisions not yet known to be published (at most `limit`)."""
        query = (
            self._db.collection(NOTIFICATIONS)
            .where(filter=firestore.FieldFilter("behind", "==", True))
            .limit(limit)
        )
        return [
            Versioned(NotifiedMarker.from_document(_fields(s)), s.update_time)
            for s in self._call(lambda: list(query.stream()))
        ]

    # writes -------------------------------------------------------------------------------
    def commit(self, change: Change) -> None:
        """Write a Change atomically; raise PreconditionFailed if any record moved since it was read."""
        if change.empty():
            return
        batch = self._db.batch()
        for rollout, expected in change.rollouts:
            self._write(
                batch,
                self._db.collection(ROLLOUTS).document(rollout.id),
                rollout.to_document(),
                expected,
            )
        for service, expected in change.services:
            self._write(
                batch,
                self._db.collection(SERVICES).document(service.name),
                service.to_document(),
                expected,
            )
        for rollout_id, decision in change.decisions:
            ref = (
                self._db.collection(ROLLOUTS)
                .document(rollout_id)
                .collection(DECISIONS)
                .document(decision.id)
            )
            batch.set(ref, to_firestore(decision.to_document()))
        for request in change.requests:
            ref = self._db.collection(REQUESTS).document(request.id)
            self._write(batch, ref, request.to_document(), MUST_NOT_EXIST)
        markers = change.committed_markers()
        for marker in markers:
            # No precondition: the rollout's own precondition in this batch orders these writes.
            doc = marker.to_document()
            part = {k: doc[k] for k in COMMITTED_FIELDS} | {"behind": True}
            ref = self._db.collection(NOTIFICATIONS).document(marker.rollout_id)
            batch.set(ref, to_firestore(part), merge=True)
        for marker, expected in change.notified:
            doc = marker.to_document()
            part = {k: doc[k] for k in NOTIFIED_FIELDS} | {"behind": doc["behind"]}
            ref = self._db.collection(NOTIFICATIONS).document(marker.rollout_id)
            batch.update(
                ref, to_firestore(part), option=self._db.write_option(last_update_time=expected)
            )
        # Firestore bills every document in the batch, whether or not the commit succeeds.
        self._commit_batch(
            batch,
            len(change.rollouts)
            + len(change.services)
            + len(change.decisions)
            + len(change.requests)
            + len(markers)
            + len(change.notified),
        )

    def _commit_batch(self, batch: Any, documents: int) -> None:
        """Commit a batch, mapping Firestore's answers to hekaton's error types."""
        metering.count(metering.FIRESTORE_WRITES, documents)
        try:
            batch.commit(**self._opts)
        except (
            google_errors.FailedPrecondition,
            google_errors.Conflict,
            google_errors.NotFound,
        ) as exc:
            raise PreconditionFailed(f"concurrent update, reload and retry: {exc.message}") from exc
        except _TRANSIENT as exc:
            raise self._transient(exc, "write") from exc
        except google_errors.InvalidArgument as exc:
            # Redelivery would send the same document again: record it instead of looping.
            raise PermanentError(f"Firestore refused the write as invalid: {exc.message}") from exc

    def record_ignored(self, event: IgnoredEvent) -> None:
        """Keep an acknowledged-but-ignored message with its reason (idempotent per message id)."""
        metering.count(metering.FIRESTORE_WRITES)
        try:
            self._db.collection(IGNORED).document(event.id).set(
                to_firestore(event.to_document()), **self._opts
            )
        except _TRANSIENT as exc:
            raise self._transient(exc, "write") from exc

    def list_ignored(self, limit: int = 50, after: str | None = None) -> list[IgnoredEvent]:
        """Recently ignored messages, newest first (those older than the entry with id `after`)."""
        query = self._db.collection(IGNORED).order_by("at", direction=firestore.Query.DESCENDING)
        if after is not None:
            if not is_document_id(after):
                return []
            cursor = self._call(
                lambda: self._db.collection(IGNORED).document(after).get(**self._opts)
            )
            if not cursor.exists:
                return []
            query = query.start_after(cursor)
        query = query.limit(limit)
        return [
            IgnoredEvent(**(_fields(s)))
            for s in self._call(lambda: list(query.stream(**self._opts)))
        ]

    def count_ignored(self) -> int:
        """How many ignored messages are kept (one aggregation read)."""
        result = self._call(lambda: list(self._db.collection(IGNORED).count().get(**self._opts)))
        return int(result[0][0].value) if result and result[0] else 0

    # dead letters -------------------------------------------------------------------------
    def get_dead_letter(self, dead_letter_id: str) -> Versioned[DeadLetter] | None:
        """One kept dead letter, or None."""
        snap = self._call(
            lambda: self._db.collection(DEAD_LETTERS).document(dead_letter_id).get(**self._opts)
        )
        if not snap.exists:
            return None
        return Versioned(DeadLetter.from_document(_fields(snap)), snap.update_time)

    def put_dead_letter(self, record: DeadLetter, expected: object | None) -> None:
        """Create (expected=MUST_NOT_EXIST) or update (expected=version) one dead letter."""
        batch = self._db.batch()
        ref = self._db.collection(DEAD_LETTERS).document(record.id)
        self._write(batch, ref, record.to_document(), expected)
        self._commit_batch(batch, 1)

    def list_dead_letters(self, limit: int = 50, after: str | None = None) -> list[DeadLetter]:
        """Kept dead letters, newest first (those older than the one with id `after`)."""
        collection = self._db.collection(DEAD_LETTERS)
        query = collection.order_by("first_seen", direction=firestore.Query.DESCENDING)
        if after is not None:
            cursor = self._call(lambda: collection.document(after).get(**self._opts))
            if not cursor.exists:
                return []
            query = query.start_after(cursor)
        query = query.limit(limit)
        snaps = self._call(lambda: list(query.stream(**self._opts)))
        return [DeadLetter.from_document(_fields(s)) for s in snaps]

    # helpers ------------------------------------------------------------------------------
    def _transient(self, exc: google_errors.GoogleAPIError, doing: str) -> RetryableError:
        """The retryable error for a failed call; an unreachable or stalled Firestore is logged at
        ERROR with where it was looked for and what to check (contention is not: it is routine)."""
        detail = getattr(exc, "message", None) or str(exc)
        if not isinstance(exc, _DOWN):
            return RetryableError(f"Firestore {doing} failed transiently: {detail}")
        where = (
            f"the emulator at {self._emulator_host} (FIRESTORE_EMULATOR_HOST)"
            if self._emulator_host
            else f"project {self._db.project} (HEKATON_PROJECT)"
        )
        message = (
            f"Firestore {doing} got no answer within {self._timeout}s from {where}: check that it "
            f"is up and reachable (timeout: HEKATON_FIRESTORE_TIMEOUT_SECONDS) "
            f"[{type(exc).__name__}: {detail[:200]}]"
        )
        log.error(message, extra={"dependency": "firestore"})
        return RetryableError(message)

    def _write(self, batch: Any, ref: Any, data: dict[str, Any], expected: object | None) -> None:
        data = to_firestore(data)
        if expected == MUST_NOT_EXIST:
            batch.create(ref, data)
        elif expected is None:
            batch.set(ref, data)
        else:
            batch.update(ref, data, option=self._db.write_option(last_update_time=expected))

    def _call(self, fn: Any) -> Any:
        try:
            result = fn()
        except _TRANSIENT as exc:
            raise self._transient(exc, "read") from exc
        # Firestore bills a query that returns nothing as one read.
        metering.count(
            metering.FIRESTORE_READS, max(1, len(result)) if isinstance(result, list) else 1
        )
        return result


# Firestore refuses an array directly inside an array ("Cannot convert an array value in an array
# value"), yet smoke request bodies and expected responses are often exactly that (a batch of feature
# rows). Inner arrays are stored wrapped in a one-key map and unwrapped on read.
_INNER_ARRAY = "_hekaton_inner_array"  # names like __x__ are reserved by Firestore


def to_firestore(value: Any) -> Any:
    """A value Firestore can store: every array nested in an array becomes `{_INNER_ARRAY: [...]}`."""
    if isinstance(value, dict):
        return {key: to_firestore(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [
            {_INNER_ARRAY: to_firestore(item)}
            if isinstance(item, list | tuple)
            else to_firestore(item)
            for item in value
        ]
    return value


def from_firestore(value: Any) -> Any:
    """Undo to_firestore."""
    if isinstance(value, dict):
        if set(value) == {_INNER_ARRAY}:
            return from_firestore(value[_INNER_ARRAY])
        return {key: from_firestore(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_firestore(item) for item in value]
    return value


def _fields(snapshot: Any) -> dict[str, Any]:
    """A document snapshot's fields, decoded."""
    fields: dict[str, Any] = from_firestore(snapshot.to_dict() or {})
    return fields
