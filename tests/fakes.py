"""Fakes at the client boundaries (store, serving, publisher) and a deterministic Pub/Sub pipeline driver.

The fakes keep the real semantics the steps rely on: preconditioned all-or-nothing writes, Knative's
rules for BYO revision names and traffic blocks, and at-least-once delivery. Unit tests only.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from events.pubsub import PubSubMessage
from events.steps import REGISTRY_TOPIC, STEP_TOPICS, StepEvent, StepType, parse_step_event
from events.transitions import TransitionEvent, parse_transition
from shared.clock import Clock, FakeClock
from shared.deps import Deps
from shared.errors import GoneFromCluster, PermanentError, PreconditionFailed, RetryableError
from shared.metrics.fake import FakeProvider, IstioTraffic
from shared.metrics.observers import IstioObserver, Measurement
from shared.model import (
    DeadLetter,
    Decision,
    IgnoredEvent,
    NotifiedMarker,
    RequestRecord,
    Rollout,
    ServiceRecord,
)
from shared.policies import FakePolicies
from shared.publisher import Publisher
from shared.registry import register
from shared.serving import (
    PREVIOUS_TAG,
    RevisionHealth,
    RevisionTemplate,
    ServiceView,
    ServingProvider,
    TrafficTarget,
)
from shared.settings import Settings
from shared.spec import ServiceSpec, parse_spec
from shared.steps import deploy, promote, shift, validate, wait_ready
from shared.steps.engine import Act, run_step
from shared.steps.ingest import handle as ingest_handle
from shared.steps.ingest import revision_name
from shared.steps.sweep import sweep
from shared.store import (
    COMMITTED_FIELDS,
    MUST_NOT_EXIST,
    NOTIFIED_FIELDS,
    Change,
    Store,
    Versioned,
    is_document_id,
)
from shared.timers.protocol import Timers

# --------------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------------

CommitHook = Callable[[Change], None]


class InMemoryStore:
    """The Store Protocol in memory, with Firestore's precondition semantics and fresh versions per write."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._versions = itertools.count(1)
        self._services: dict[str, tuple[dict[str, Any], int]] = {}
        self._rollouts: dict[str, tuple[dict[str, Any], int]] = {}
        self._decisions: dict[str, dict[str, dict[str, Any]]] = {}
        self._ignored: dict[str, IgnoredEvent] = {}
        self._requests: dict[str, dict[str, Any]] = {}
        self._dead_letters: dict[str, tuple[dict[str, Any], int]] = {}
        self._notifications: dict[str, tuple[dict[str, Any], int]] = {}
        # Called with every non-empty Change before it is checked; raising aborts the commit (crash injection).
        self.before_commit: list[CommitHook] = []
        self.commits = 0
        self.marker_commits = 0
        self.failed_commits = 0
        self.decision_writes: list[
            tuple[str, str]
        ] = []  # (rollout id, entry id) per committed write

    # services ------------------------------------------------------------------------------
    def get_service(self, name: str) -> Versioned[ServiceRecord] | None:
        """One registered service, or None."""
        with self._lock:
            found = self._services.get(name)
            if found is None:
                return None
            return Versioned(ServiceRecord.from_document(copy.deepcopy(found[0])), found[1])

    def list_services(
        self, limit: int | None = None, after: str | None = None
    ) -> list[ServiceRecord]:
        """Registered services by name (at most `limit`, those after the name `after`)."""
        with self._lock:
            found = [
                ServiceRecord.from_document(copy.deepcopy(doc))
                for name, (doc, _v) in sorted(self._services.items())
                if after is None or name > after
            ]
        return found if limit is None else found[:limit]

    def services_for_repository(self, repository: str) -> list[Versioned[ServiceRecord]]:
        """The services following an image repository (by name, like a Firestore query)."""
        with self._lock:
            return [
                Versioned(ServiceRecord.from_document(copy.deepcopy(doc)), version)
                for _, (doc, version) in sorted(self._services.items())
                if doc.get("spec", {}).get("image") == repository
            ]

    def services_warm_until(self, before: datetime, limit: int = 50) -> list[ServiceRecord]:
        """Services whose previous revision's warm window ended at or before `before` (by name)."""
        with self._lock:
            found = [
                ServiceRecord.from_document(copy.deepcopy(doc))
                for _, (doc, _v) in sorted(self._services.items())
                if doc.get("previous_warm_until") is not None
                and doc["previous_warm_until"] <= before
            ]
        return found[:limit]

    def services_changed_since(self, since: datetime, limit: int = 50) -> list[ServiceRecord]:
        """Services whose record was updated at or after `since` (newest first)."""
        with self._lock:
            found = [
                ServiceRecord.from_document(copy.deepcopy(doc))
                for _, (doc, _v) in sorted(self._services.items())
                if doc.get("updated_at") is not None and doc["updated_at"] >= since
            ]
        found.sort(key=lambda record: record.updated_at or since, reverse=True)
        return found[:limit]

    def put_service(self, record: ServiceRecord, expected: object | None) -> None:
        """Create (expected=MUST_NOT_EXIST) or update (expected=version) one service."""
        self.commit(Change(services=[(record, expected)]))

    # rollouts ------------------------------------------------------------------------------
    def get_rollout(self, rollout_id: str) -> Versioned[Rollout] | None:
        """One rollout, or None."""
        with self._lock:
            found = self._rollouts.get(rollout_id)
            if found is None:
                return None
            return Versioned(Rollout.from_document(copy.deepcopy(found[0])), found[1])

    def list_rollouts(
        self, service: str, limit: int = 20, after: str | None = None
    ) -> list[Rollout]:
        """A service's rollouts, newest first (ties by id, descending, as Firestore orders them)."""
        with self._lock:
            docs = [
                copy.deepcopy(d) for d, _v in self._rollouts.values() if d["service"] == service
            ]
        docs.sort(key=lambda d: (d["created_at"], d["id"]), reverse=True)
        if after is not None:
            ids = [d["id"] for d in docs]
            docs = docs[ids.index(after) + 1 :] if after in ids else []
        return [Rollout.from_document(d) for d in docs[:limit]]

    def active_rollouts(self) -> list[Versioned[Rollout]]:
        """Every rollout not yet in a terminal phase (by id)."""
        with self._lock:
            return [
                Versioned(Rollout.from_document(copy.deepcopy(doc)), version)
                for _, (doc, version) in sorted(self._rollouts.items())
                if doc["active"]
            ]

    def decisions(self, rollout_id: str, after_seq: int = 0) -> list[Decision]:
        """A rollout's decision log, oldest first (entries with seq > after_seq)."""
        with self._lock:
            docs = [copy.deepcopy(d) for d in self._decisions.get(rollout_id, {}).values()]
        ordered = sorted((d for d in docs if d["seq"] > after_seq), key=lambda d: d["seq"])
        return [Decision.from_document(d) for d in ordered]

    def get_request(self, request_id: str) -> RequestRecord | None:
        """An operator request already applied or refused, or None."""
        with self._lock:
            found = self._requests.get(request_id)
        return RequestRecord.from_document(copy.deepcopy(found)) if found else None

    def get_notified(self, rollout_id: str) -> Versioned[NotifiedMarker] | None:
        """A rollout's notified marker, or None."""
        with self._lock:
            found = self._notifications.get(rollout_id)
            if found is None:
                return None
            return Versioned(NotifiedMarker.from_document(copy.deepcopy(found[0])), found[1])

    def notifications_behind(self, limit: int = 50) -> list[Versioned[NotifiedMarker]]:
        """Markers with committed decisions not yet known to be published (by rollout id)."""
        with self._lock:
            return [
                Versioned(NotifiedMarker.from_document(copy.deepcopy(doc)), version)
                for _, (doc, version) in sorted(self._notifications.items())
                if doc.get("behind")
            ][:limit]

    # writes --------------------------------------------------------------------------------
    def commit(self, change: Change) -> None:
        """Write a Change atomically; raise PreconditionFailed (writing nothing) if any record moved."""
        if change.empty():
            return
        # As Firestore: a write naming a document it cannot hold fails (the client raises ValueError
        # for '/', the server refuses the rest), so callers must never get that far.
        ids = [r.id for r, _ in change.rollouts] + [v.name for v, _ in change.services]
        ids += [q.id for q in change.requests] + [d.id for _, d in change.decisions]
        ids += [rid for rid, _ in change.decisions]
        bad = [i for i in ids if not is_document_id(i)]
        if bad:
            raise ValueError(f"not a Firestore document id: {bad[0][:80]!r}")
        with self._lock:
            for hook in list(self.before_commit):
                hook(change)
            for rollout, expected in change.rollouts:
                self._check(self._rollouts, "rollout", rollout.id, expected)
            for service, expected in change.services:
                self._check(self._services, "service", service.name, expected)
            for request in change.requests:
                if request.id in self._requests:
                    self.failed_commits += 1
                    raise PreconditionFailed(f"request {request.id} already exists")
            for marker, expected in change.notified:
                if marker.rollout_id not in self._notifications:
                    self.failed_commits += 1
                    raise PreconditionFailed(f"notified marker {marker.rollout_id} is missing")
                self._check(self._notifications, "notified marker", marker.rollout_id, expected)
            version = next(self._versions)
            for rollout, _expected in change.rollouts:
                self._rollouts[rollout.id] = (copy.deepcopy(rollout.to_document()), version)
            for service, _expected in change.services:
                self._services[service.name] = (copy.deepcopy(service.to_document()), version)
            for rollout_id, decision in change.decisions:
                log = self._decisions.setdefault(rollout_id, {})
                log[decision.id] = copy.deepcopy(decision.to_document())
                self.decision_writes.append((rollout_id, decision.id))
            for request in change.requests:
                self._requests[request.id] = copy.deepcopy(request.to_document())
            for marker in change.committed_markers():
                doc = marker.to_document()
                self._merge_marker(marker.rollout_id, doc, COMMITTED_FIELDS, True, version)
            for marker, _expected in change.notified:
                doc = marker.to_document()
                self._merge_marker(marker.rollout_id, doc, NOTIFIED_FIELDS, doc["behind"], version)
            if change.notified and not (change.rollouts or change.services or change.decisions):
                self.marker_commits += 1  # bookkeeping after a publish, not a step's write
            else:
                self.commits += 1

    def _merge_marker(
        self,
        rollout_id: str,
        doc: dict[str, Any],
        owned: tuple[str, ...],
        behind: bool,
        version: int,
    ) -> None:
        """Firestore's merge write of the fields one kind of marker write owns."""
        current = dict(self._notifications.get(rollout_id, ({}, 0))[0])
        current.update({k: copy.deepcopy(doc[k]) for k in owned}, behind=behind)
        self._notifications[rollout_id] = (current, version)

    def record_ignored(self, event: IgnoredEvent) -> None:
        """Keep an acknowledged-but-ignored message with its reason (idempotent per message id)."""
        if not is_document_id(event.id):
            raise ValueError(f"not a Firestore document id: {event.id[:80]!r}")
        with self._lock:
            self._ignored[event.id] = event

    def list_ignored(self, limit: int = 50, after: str | None = None) -> list[IgnoredEvent]:
        """Recently ignored messages, newest first (those older than the entry with id `after`)."""
        with self._lock:
            events = sorted(self._ignored.values(), key=lambda e: (e.at, e.id), reverse=True)
        if after is not None:
            ids = [e.id for e in events]
            events = events[ids.index(after) + 1 :] if after in ids else []
        return events[:limit]

    def count_ignored(self) -> int:
        """How many ignored messages are kept."""
        with self._lock:
            return len(self._ignored)

    # dead letters --------------------------------------------------------------------------
    def get_dead_letter(self, dead_letter_id: str) -> Versioned[DeadLetter] | None:
        """One kept dead letter, or None."""
        with self._lock:
            found = self._dead_letters.get(dead_letter_id)
            if found is None:
                return None
            return Versioned(DeadLetter.from_document(copy.deepcopy(found[0])), found[1])

    def put_dead_letter(self, record: DeadLetter, expected: object | None) -> None:
        """Create (expected=MUST_NOT_EXIST) or update (expected=version) one dead letter."""
        with self._lock:
            self._check(self._dead_letters, "dead letter", record.id, expected)
            self._dead_letters[record.id] = (record.to_document(), next(self._versions))

    def list_dead_letters(self, limit: int = 50, after: str | None = None) -> list[DeadLetter]:
        """Kept dead letters, newest first (those older than the one with id `after`)."""
        with self._lock:
            records = [
                DeadLetter.from_document(copy.deepcopy(d)) for d, _ in self._dead_letters.values()
            ]
        records.sort(key=lambda r: (r.first_seen, r.id), reverse=True)
        if after is not None:
            ids = [r.id for r in records]
            records = records[ids.index(after) + 1 :] if after in ids else []
        return records[:limit]

    # helpers -------------------------------------------------------------------------------
    def _check(
        self,
        table: dict[str, tuple[dict[str, Any], int]],
        kind: str,
        key: str,
        expected: object | None,
    ) -> None:
        current = table.get(key)
        if expected is None:
            return
        if expected == MUST_NOT_EXIST:
            if current is not None:
                self.failed_commits += 1
                raise PreconditionFailed(f"{kind} {key} already exists")
            return
        if current is None or current[1] != expected:
            self.failed_commits += 1
            raise PreconditionFailed(
                f"{kind} {key} is at version {current[1] if current else 'missing'}, expected {expected}"
            )


def fail_commit_once(
    store: InMemoryStore, when: Callable[[Change], bool], error: Exception
) -> list[Change]:
    """Make the store raise `error` on the first commit for which `when` is true; returns the aborted changes."""
    aborted: list[Change] = []

    def hook(change: Change) -> None:
        if not aborted and when(change):
            aborted.append(change)
            raise error

    store.before_commit.append(hook)
    return aborted


# --------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------


@dataclass
class FakeRevision:
    """A revision the fake cluster created."""

    name: str
    service: str
    image: str
    created_at: datetime
    health: RevisionHealth | None = None  # None: follow the startup delay
    namespace: str = ""


@dataclass
class FakeResponse:
    """What a revision's container answers to any request."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    latency_ms: float = 0.0


@dataclass(frozen=True)
class TrafficWrite:
    """One write of a Service's traffic block (deploy or set_traffic)."""

    namespace: str
    service: str
    traffic: tuple[TrafficTarget, ...]
    at: datetime | None = field(default=None, compare=False)


class FakeServing:
    """ServingProvider in memory, keeping Knative's rules for BYO names and traffic blocks."""

    DOMAIN = "example.com"

    def __init__(self, clock: Clock | None = None, *, startup_seconds: float = 0.0) -> None:
        self.clock: Clock = clock or FakeClock()
        self.startup_seconds = startup_seconds
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.traffic: dict[tuple[str, str], list[TrafficTarget]] = {}
        self.versions: dict[tuple[str, str], int] = {}  # resourceVersion of each Service
        self.revisions: dict[tuple[str, str], FakeRevision] = {}
        self.traffic_writes: list[TrafficWrite] = []
        # Writes that named a revision the cluster does not have (Knative's Route would go RevisionMissing).
        self.missing_revision_writes: list[TrafficWrite] = []
        self.responses: dict[str, FakeResponse] = {}
        self.image_health: dict[str, RevisionHealth] = {}
        self._failures: dict[str, list[Exception]] = {}
        # Called with (namespace, service, revision, status) for every request a tag URL served.
        self.request_listeners: list[Callable[[str, str, str, int], None]] = []

    # test controls -------------------------------------------------------------------------
    def set_health(self, namespace: str, revision: str, health: RevisionHealth) -> None:
        """Pin a revision's health (e.g. ExitCode1) instead of following the startup delay."""
        self.revisions[(namespace, revision)].health = health

    def fail_image(self, digest: str, health: RevisionHealth) -> None:
        """Give every revision later created from an image with this digest a fixed health (e.g. ExitCode1)."""
        self.image_health[digest] = health

    def fail_next(self, method: str, error: Exception, times: int = 1) -> None:
        """Make the next `times` calls of `method` raise `error`."""
        self._failures.setdefault(method, []).extend([error] * times)

    def respond(self, revision: str, response: FakeResponse) -> None:
        """Set what a revision's container answers."""
        self.responses[revision] = response

    def traffic_of(
        self, namespace: str, service: str, *, with_previous: bool = False
    ) -> dict[str, int]:
        """The Service's traffic as {revision: percent} (zero entries included; the warm previous
        revision, routed at 0 % after a promotion, only `with_previous`)."""
        return {
            t.revision: t.percent
            for t in self.traffic.get((namespace, service), [])
            if with_previous or t.tag != PREVIOUS_TAG
        }

    def distinct_traffic_states(
        self, namespace: str, service: str
    ) -> set[tuple[TrafficTarget, ...]]:
        """Every different traffic block written to a Service."""
        return {
            w.traffic
            for w in self.traffic_writes
            if (w.namespace, w.service) == (namespace, service)
        }

    def traffic_changes(self, namespace: str, service: str) -> list[tuple[TrafficTarget, ...]]:
        """The traffic blocks written to a Service, with idempotent re-applies collapsed."""
        changes: list[tuple[TrafficTarget, ...]] = []
        for write in self.traffic_writes:
            if (write.namespace, write.service) == (namespace, service) and (
                not changes or changes[-1] != write.traffic
            ):
                changes.append(write.traffic)
        return changes

    def calls_of(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of one method."""
        return [args for name, args in self.calls if name == method]

    # ServingProvider -----------------------------------------------------------------------
    def get_service(self, namespace: str, name: str) -> ServiceView | None:
        """The Service's status, or None when it does not exist."""
        self._enter("get_service", namespace, name)
        traffic = self.traffic.get((namespace, name))
        if traffic is None:
            return None
        own = [r for r in self.revisions.values() if r.service == name]
        latest = own[-1].name if own else None
        ready = [r.name for r in own if self._health(namespace, r).ready]
        return ServiceView(
            name=name,
            namespace=namespace,
            traffic=[
                TrafficTarget(t.revision, t.percent, t.tag, self._tag_url(t.tag, namespace, name))
                for t in traffic
            ],
            latest_created_revision=latest,
            latest_ready_revision=ready[-1] if ready else None,
            ready=True,
            url=f"http://{name}.{namespace}.{self.DOMAIN}",
            spec_traffic=list(traffic),
            resource_version=str(self.versions.get((namespace, name), 0)),
        )

    def revision_exists(self, namespace: str, revision: str) -> bool:
        """Whether a Revision of that name exists."""
        self._enter("revision_exists", namespace, revision)
        return (namespace, revision) in self.revisions

    def deploy(
        self, namespace: str, name: str, template: RevisionTemplate, traffic: list[TrafficTarget]
    ) -> None:
        """Create the revision (BYO name rules as Knative's webhook) and write the traffic block."""
        self._enter("deploy", namespace, name, template, tuple(traffic))
        if not template.name.startswith(f"{name}-"):
            raise PermanentError(f"revision name {template.name!r} must start with '{name}-'")
        existing = self.revisions.get((namespace, template.name))
        if existing is not None and existing.image != template.image:
            raise PermanentError(
                f"revision {template.name} exists with another image; a template change needs a new name"
            )
        self._validate_traffic(traffic)
        if existing is None:
            digest = template.image.rpartition("@")[2]
            self.revisions[(namespace, template.name)] = FakeRevision(
                template.name,
                name,
                template.image,
                self.clock.now(),
                self.image_health.get(digest),
                namespace,
            )
        self._write_traffic(namespace, name, traffic)

    def set_traffic(
        self,
        namespace: str,
        name: str,
        traffic: list[TrafficTarget],
        *,
        if_version: str | None = None,
    ) -> None:
        """Replace the Service's traffic block with absolute weights (if still at `if_version`)."""
        self._enter("set_traffic", namespace, name, tuple(traffic))
        if (namespace, name) not in self.traffic:
            raise GoneFromCluster(f"patch Knative Service {namespace}/{name}: not found (404)")
        if if_version is not None and if_version != str(self.versions.get((namespace, name), 0)):
            raise RetryableError(f"patch Knative Service {namespace}/{name} failed (409 Conflict)")
        self._validate_traffic(traffic)
        self._write_traffic(namespace, name, traffic)

    def revision_health(self, namespace: str, revision: str) -> RevisionHealth:
        """The revision's pinned health, else Ready once the startup delay has passed."""
        self._enter("revision_health", namespace, revision)
        found = self.revisions.get((namespace, revision))
        if found is None:
            return RevisionHealth(exists=False, ready=None)
        return self._health(namespace, found)

    def delete_service(self, namespace: str, name: str) -> bool:
        """Forget the Service and its revisions (Knative's owner references cascade)."""
        self._enter("delete_service", namespace, name)
        existed = self.traffic.pop((namespace, name), None) is not None
        for key in [
            k for k, r in self.revisions.items() if k[0] == namespace and r.service == name
        ]:
            del self.revisions[key]
        return existed

    # the model behind the tag URLs -----------------------------------------------------------
    def http_client(self) -> httpx.Client:
        """An httpx client whose requests reach the revision a tag URL routes to (no network)."""
        return httpx.Client(transport=httpx.MockTransport(self._serve_http))

    def _serve_http(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        revision = self._revision_for_host(host)
        if revision is None:
            return httpx.Response(404, json={"error": f"no route for host {host}"})
        if revision.health is not None and revision.health.ready is False:
            return httpx.Response(503, json={"error": "revision is not serving"})
        answer = self.responses.get(revision.name, FakeResponse())
        for listener in self.request_listeners:
            listener(revision.namespace, revision.service, revision.name, answer.status)
        body = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
        return httpx.Response(
            answer.status, content=body, headers={"Content-Type": "application/json"}
        )

    # helpers -------------------------------------------------------------------------------
    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        pending = self._failures.get(method)
        if pending:
            raise pending.pop(0)

    def _health(self, namespace: str, revision: FakeRevision) -> RevisionHealth:
        if revision.health is not None:
            return replace(revision.health, service=revision.service)
        started = (self.clock.now() - revision.created_at).total_seconds() >= self.startup_seconds
        return RevisionHealth(
            exists=True, ready=True if started else None, service=revision.service
        )

    def _validate_traffic(self, traffic: list[TrafficTarget]) -> None:
        total = sum(t.percent for t in traffic)
        if total != 100:
            raise PermanentError(f"traffic targets sum to {total}, want 100")
        tags = [t.tag for t in traffic if t.tag]
        if len(tags) != len(set(tags)):
            raise PermanentError(f"duplicate traffic tags {tags}")

    def _write_traffic(self, namespace: str, name: str, traffic: list[TrafficTarget]) -> None:
        write = TrafficWrite(namespace, name, tuple(traffic), self.clock.now())
        self.traffic_writes.append(write)
        if any((namespace, t.revision) not in self.revisions for t in traffic):
            self.missing_revision_writes.append(write)
        self.traffic[(namespace, name)] = list(traffic)
        self.versions[(namespace, name)] = self.versions.get((namespace, name), 0) + 1

    def _tag_url(self, tag: str | None, namespace: str, name: str) -> str | None:
        return f"http://{tag}-{name}.{namespace}.{self.DOMAIN}" if tag else None

    def _revision_for_host(self, host: str) -> FakeRevision | None:
        for (namespace, name), traffic in self.traffic.items():
            for target in traffic:
                if target.tag and host == f"{target.tag}-{name}.{namespace}.{self.DOMAIN}":
                    return self.revisions.get((namespace, target.revision))
        return None


# --------------------------------------------------------------------------------------------
# Users and the mesh's metrics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """How a revision treats user requests: exact shares of errors and of slow answers."""

    error_rate: float = 0.0
    slow_rate: float = 0.0
    fast_ms: float = 20.0
    slow_ms: float = 800.0


class SimulatedUsers:
    """Users sending `rps` requests/s to a Service, split as the fake cluster routes them.

    Requests are counted the way Istio's proxy counts them (`IstioTraffic`) and scraped into a
    `FakeProvider`, so the real `IstioObserver` measures them. Counts are deterministic: a revision
    with error rate e has served floor(n*e) errors after n requests. Traffic is integrated lazily over
    the cluster's traffic history whenever something is measured. Requests sent to a tag URL (the
    validation's and the top-up's) are counted too.
    """

    def __init__(
        self,
        serving: FakeServing,
        clock: Clock,
        *,
        rps: float,
        namespace: str = "models",
        service: str = "iris",
    ) -> None:
        self.serving = serving
        self.clock = clock
        self.rps = rps
        self.namespace = namespace
        self.service = service
        self.behaviour: dict[str, Behaviour] = {}
        self.provider = FakeProvider()
        self.mesh = IstioTraffic(self.provider)
        self.observer = IstioObserver(self.provider)
        self._served: dict[str, int] = {}
        self._carry: dict[str, float] = {}
        self._until: datetime | None = None
        serving.request_listeners.append(self._tag_request)

    def behave(self, revision: str, behaviour: Behaviour) -> None:
        """Set how a revision answers users from now on."""
        self.behaviour[revision] = behaviour

    def measure(
        self,
        namespace: str,
        service: str,
        revision: str,
        start: datetime,
        end: datetime,
        latency_threshold_ms: float,
    ) -> Measurement:
        """Serve the users up to `end`, then measure like the production observer."""
        self.catch_up(end)
        return self.observer.measure(namespace, service, revision, start, end, latency_threshold_ms)

    def catch_up(self, until: datetime) -> None:
        """Serve every request users sent up to `until`, split as the traffic was at each moment."""
        writes = [
            w
            for w in self.serving.traffic_writes
            if (w.namespace, w.service) == (self.namespace, self.service) and w.at is not None
        ]
        served_until = self._until or (writes[0].at if writes and writes[0].at else until)
        moments = sorted({w.at for w in writes if w.at and served_until < w.at < until} | {until})
        for moment in moments:
            split = [w for w in writes if w.at is not None and w.at <= served_until]
            if split:
                seconds = (moment - served_until).total_seconds()
                for target in split[-1].traffic:
                    self._serve(target.revision, self.rps * seconds * target.percent / 100)
            served_until = moment
            self.mesh.scrape(moment)
        self._until = served_until

    def _serve(self, revision: str, exact: float) -> None:
        total = exact + self._carry.get(revision, 0.0)
        count = int(total)
        self._carry[revision] = total - count
        if count:
            self._count(revision, count)

    def _count(self, revision: str, count: int, status: int | None = None) -> None:
        b = self.behaviour.get(revision, Behaviour())
        before = self._served.get(revision, 0)
        after = before + count
        self._served[revision] = after
        errors = int(after * b.error_rate) - int(before * b.error_rate)
        if status is not None:
            errors = count if status >= 500 else 0
        slow = int(after * b.slow_rate) - int(before * b.slow_rate)
        ns, svc = self.namespace, self.service
        ok = count - errors
        for code, n in ((500, errors), (200, ok)):
            slow_here = min(n, slow)
            slow -= slow_here
            if n - slow_here:
                self.mesh.serve(
                    ns, svc, revision, code=code, duration_ms=b.fast_ms, count=n - slow_here
                )
            if slow_here:
                self.mesh.serve(
                    ns, svc, revision, code=code, duration_ms=b.slow_ms, count=slow_here
                )

    def _tag_request(self, namespace: str, service: str, revision: str, status: int) -> None:
        if (namespace, service) == (self.namespace, self.service):
            self._count(revision, 1, status)


# --------------------------------------------------------------------------------------------
# Publisher
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """One step event as it would sit in Pub/Sub: the message id and the exact body sent."""

    message_id: str
    event: StepEvent
    body: bytes
    source: str

    def as_message(self) -> PubSubMessage:
        """The Pub/Sub message a push subscription would deliver."""
        return PubSubMessage(
            message_id=self.message_id,
            data=self.body,
            attributes={"ce-type": self.event.type.value, "rollout": self.event.rollout_id},
            topic=self.event.type.topic,
        )


class RecordingPublisher:
    """Collects step events instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[Published] = []
        self.transitions: list[TransitionEvent] = []  # notifications on hekaton-events, parsed back
        self.raw: list[tuple[str, bytes, dict[str, str], str]] = []  # (topic, data, attributes, id)
        self._ids = itertools.count(1)
        self._failures: list[Exception] = []

    def fail_next(self, error: Exception) -> None:
        """Make the next publish raise (a crash after the write and before the publish)."""
        self._failures.append(error)

    def publish_step(self, event: StepEvent, *, source: str) -> str:
        """Record the event (serialised exactly as the real publisher would) and return its id."""
        if self._failures:
            raise self._failures.pop(0)
        message_id = f"step-{next(self._ids)}"
        body = event.to_json(source)
        self.sent.append(
            Published(message_id, parse_step_event(body, expected=event.type), body, source)
        )
        return message_id

    def publish_transition(self, event: TransitionEvent) -> str:
        """Record a notification (serialised and parsed back, as a consumer would see it)."""
        self.transitions.append(parse_transition(event.to_json()))
        return f"event-{next(self._ids)}"

    def publish_raw(
        self,
        topic: str,
        data: bytes,
        attributes: dict[str, str] | None = None,
        *,
        timeout: float = 30,
    ) -> str:
        """Record a message published as it is (a dead letter's replay); return its id."""
        if self._failures:
            raise self._failures.pop(0)
        message_id = f"raw-{next(self._ids)}"
        self.raw.append((topic, data, dict(attributes or {}), message_id))
        return message_id

    def events(self, step: StepType | None = None) -> list[StepEvent]:
        """Every recorded event (of one type)."""
        return [p.event for p in self.sent if step is None or p.event.type is step]


# --------------------------------------------------------------------------------------------
# Pipeline driver
# --------------------------------------------------------------------------------------------

STEP_ACTS: dict[StepType, Act] = {
    StepType.DEPLOY: deploy.act,
    StepType.WAIT_READY: wait_ready.act,
    StepType.VALIDATE: validate.act,
    StepType.SHIFT: shift.act,
    StepType.PROMOTE: promote.act,
}
_TOPIC_STEPS = {topic: step for step, topic in STEP_TOPICS.items()}


def rfc3339(moment: datetime) -> str:
    """Pub/Sub's publishTime format (UTC, `Z`, nanoseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def registry_message(
    message_id: str,
    *,
    action: str = "INSERT",
    digest: str | None = None,
    tag: str | None = None,
    publish_time: datetime | None = None,
) -> PubSubMessage:
    """An Artifact Registry notification as ingest receives it (`digest`/`tag` are full references)."""
    body: dict[str, str] = {"action": action}
    if digest is not None:
        body["digest"] = digest
    if tag is not None:
        body["tag"] = tag
    return PubSubMessage(
        message_id=message_id,
        data=json.dumps(body).encode(),
        publish_time=rfc3339(publish_time) if publish_time else None,
        topic=REGISTRY_TOPIC,
    )


def pubsub_envelope(
    message: PubSubMessage, subscription: str = "projects/p/subscriptions/s"
) -> dict[str, Any]:
    """The Eventarc CloudEvent data for a message: `{"message": {...}, "subscription": ...}`."""
    inner: dict[str, Any] = {
        "data": base64.b64encode(message.data).decode(),
        "messageId": message.message_id,
        "attributes": dict(message.attributes),
    }
    if message.publish_time:
        inner["publishTime"] = message.publish_time
    return {"message": inner, "subscription": subscription}


@dataclass
class Delivery:
    """One delivery attempt of one message and what came of it."""

    message: PubSubMessage
    attempt: int
    result: Any = None
    error: Exception | None = None


class Pipeline:
    """Delivers messages to the steps the way Pub/Sub push would: at least once, maybe out of order.

    Published step events go to the step for their topic (through the real JSON round trip), registry
    messages to ingest; when nothing is in flight the fake clock advances and the tick sweeps. A raised
    error is a nack: the message is delivered again later.
    """

    def __init__(
        self,
        deps: Deps,
        *,
        duplicate: bool = False,
        rng: random.Random | None = None,
        drop: Callable[[StepEvent], bool] | None = None,
        tick_seconds: float = 1.0,
        max_attempts: int = 10,
    ) -> None:
        if not isinstance(deps.clock, FakeClock):
            raise TypeError("the Pipeline needs a FakeClock to drive time")
        if not isinstance(deps.publisher, RecordingPublisher):
            raise TypeError("the Pipeline needs a RecordingPublisher")
        self.deps = deps
        self.clock: FakeClock = deps.clock
        self.publisher: RecordingPublisher = deps.publisher
        self.duplicate = duplicate
        self.rng = rng
        self.drop = drop
        self.tick_seconds = tick_seconds
        self.max_attempts = max_attempts
        self.queue: list[tuple[PubSubMessage, int]] = []
        self.deliveries: list[Delivery] = []
        self.dropped: list[StepEvent] = []
        self.dead_lettered: list[PubSubMessage] = []
        self.ticks = 0
        self._collected = len(self.publisher.sent)  # earlier events belong to earlier drivers

    # feeding -------------------------------------------------------------------------------
    def push(
        self,
        repository: str,
        digest: str,
        tag: str | None = None,
        *,
        message_id: str,
        publish_time: datetime | None = None,
    ) -> PubSubMessage:
        """Queue an Artifact Registry INSERT for `repository[:tag]@digest` (published now by default)."""
        message = registry_message(
            message_id,
            digest=f"{repository}@{digest}",
            tag=f"{repository}:{tag}" if tag else None,
            publish_time=publish_time or self.clock.now(),
        )
        self.enqueue(message)
        return message

    def enqueue(self, message: PubSubMessage) -> None:
        """Queue a message (twice when delivering duplicates)."""
        self.queue.append((message, 1))
        if self.duplicate:
            self.queue.append((message, 1))

    # running -------------------------------------------------------------------------------
    def deliver_next(self) -> Delivery:
        """Deliver one queued message (a random one when shuffling)."""
        index = self.rng.randrange(len(self.queue)) if self.rng else 0
        message, attempt = self.queue.pop(index)
        delivery = Delivery(message, attempt)
        try:
            delivery.result = self._dispatch(message)
        except Exception as exc:  # a nack: Pub/Sub redelivers, until the dead-letter limit
            delivery.error = exc
            if attempt < self.max_attempts:
                self.queue.append((message, attempt + 1))
            else:
                self.dead_lettered.append(message)
        self.deliveries.append(delivery)
        self._collect()
        return delivery

    def drain(self, limit: int = 1000, until: Callable[[], bool] | None = None) -> bool:
        """Deliver until nothing is in flight, or until `until()` holds after a delivery (then True)."""
        for _ in range(limit):
            if until is not None and until():
                return True
            if not self.queue:
                return False
            self.deliver_next()
        raise AssertionError(f"pipeline still busy after {limit} deliveries")

    def tick(self) -> None:
        """Run the sweep once, as the scheduled tick does."""
        self.ticks += 1
        sweep(self.deps, cause=f"tick-{self.ticks}")
        self._collect()

    def run(self, max_ticks: int = 500, until: Callable[[], bool] | None = None) -> None:
        """Deliver, then advance time and tick while rollouts are active; stop early once `until()` holds."""
        for _ in range(max_ticks):
            if self.drain(until=until):
                return
            if until is None and not self.deps.store.active_rollouts():
                return
            self.clock.advance(self.tick_seconds)
            self.tick()
        raise AssertionError(f"pipeline did not settle within {max_ticks} ticks")

    def errors(self) -> list[Exception]:
        """Every error a delivery raised (each was redelivered or dead-lettered)."""
        return [d.error for d in self.deliveries if d.error is not None]

    # helpers -------------------------------------------------------------------------------
    def _dispatch(self, message: PubSubMessage) -> Any:
        if message.topic == REGISTRY_TOPIC:
            return ingest_handle(self.deps, message)
        step = _TOPIC_STEPS.get(message.topic or "")
        if step is None:
            raise AssertionError(f"no function subscribes to topic {message.topic!r}")
        event = parse_step_event(message.data, expected=step)
        return run_step(self.deps, event, STEP_ACTS[step], source=step.name.lower())

    def _collect(self) -> None:
        for published in self.publisher.sent[self._collected :]:
            if self.drop is not None and self.drop(published.event):
                self.dropped.append(published.event)
                continue
            self.enqueue(published.as_message())
        self._collected = len(self.publisher.sent)


def drop_first(step: StepType) -> Callable[[StepEvent], bool]:
    """A drop predicate losing only the first published event of one step type."""
    state = {"dropped": False}

    def predicate(event: StepEvent) -> bool:
        if event.type is step and not state["dropped"]:
            state["dropped"] = True
            return True
        return False

    return predicate


def decision_trail(decisions: Iterable[Decision]) -> list[tuple[str, str, str, str, int]]:
    """What two runs must agree on: (id, outcome, from, to, step) for each entry, in order."""
    return [(d.id, d.outcome, d.phase_from, d.phase_to, d.step_index) for d in decisions]


# --------------------------------------------------------------------------------------------
# A whole world of fakes
# --------------------------------------------------------------------------------------------

REPOSITORY = "registry.local/models/iris"


def digest_of(text: str) -> str:
    """A deterministic `sha256:<64 hex>` digest for a test image."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def iris_spec(**overrides: Any) -> dict[str, Any]:
    """A valid service spec document (the example model), with overrides."""
    spec: dict[str, Any] = {
        "name": "iris",
        "namespace": "models",
        "image": REPOSITORY,
        "tag_filter": r"v\d+",
        "steps": [10, 50, 100],
        "bake_seconds": 0,
        "readiness_deadline_seconds": 60,
        # Most rule tests are about delivery, not judging: they opt in to analysis when they need it.
        "analysis": {"enabled": False},
        "validation": {
            "timeout_seconds": 5,
            "requests": [
                {
                    "name": "predict-setosa",
                    "path": "/predict",
                    "json": {"instances": [[5.1, 3.5, 1.4, 0.2]]},
                    "expect": {"status": 200, "json": {"ok": True}},
                }
            ],
        },
    }
    spec.update(overrides)
    return spec


@dataclass
class FakeProbe:
    """A dependency check for /healthz that passes, or raises `error` (a dependency that is down)."""

    name: str
    error: Exception | None = None

    def check(self) -> None:
        """Raise the configured error, if any."""
        if self.error is not None:
            raise self.error


@dataclass
class World:
    """Fakes wired into one Deps, plus helpers to register services and run pushes."""

    clock: FakeClock
    store: Any  # an InMemoryStore, or the real store under test
    serving: FakeServing
    publisher: RecordingPublisher
    deps: Deps
    users: SimulatedUsers  # iris's users (0 requests/s until a test sets `users.rps`)

    @classmethod
    def create(
        cls,
        *,
        startup_seconds: float = 0.0,
        store: Store | None = None,
        timers: Timers | None = None,
        **settings: Any,
    ) -> World:
        """A fresh world; `settings` override Settings fields; `store` replaces the in-memory one."""
        clock = FakeClock()
        serving = FakeServing(clock, startup_seconds=startup_seconds)
        publisher = RecordingPublisher()
        chosen = store if store is not None else InMemoryStore()
        users = SimulatedUsers(serving, clock, rps=0.0)
        deps = Deps(
            Settings(project="hekaton-test", **settings),
            store=chosen,
            serving=serving,
            publisher=publisher,
            clock=clock,
            http=serving.http_client(),
            metrics=users,
            policies=FakePolicies(),
            probes=(FakeProbe("firestore"), FakeProbe("kubernetes")),
            timers=timers,
        )
        return cls(clock, chosen, serving, publisher, deps, users)

    def register(self, **overrides: Any) -> ServiceSpec:
        """Register a service spec (iris by default)."""
        spec = parse_spec(iris_spec(**overrides))
        register(self.deps.store, spec, self.clock.now())
        return spec

    def pipeline(self, **options: Any) -> Pipeline:
        """A Pipeline over this world's deps."""
        return Pipeline(self.deps, **options)

    def push(
        self,
        pipeline: Pipeline,
        tag: str,
        *,
        message_id: str | None = None,
        publish_time: datetime | None = None,
    ) -> str:
        """Queue a push of image `iris:<tag>` (digest derived from the tag); returns the digest."""
        digest = digest_of(tag)
        pipeline.push(
            REPOSITORY,
            digest,
            tag,
            message_id=message_id or f"push-{tag}",
            publish_time=publish_time,
        )
        return digest

    def revision(self, tag: str, service: str = "iris") -> str:
        """The revision name a push of `tag` deploys as."""
        return revision_name(service, digest_of(tag))

    def traffic(self) -> dict[str, int]:
        """iris's traffic as the fake cluster has it."""
        return self.serving.traffic_of("models", "iris")

    def rollouts(self, service: str = "iris") -> list[Rollout]:
        """A service's rollouts, newest first."""
        return self.deps.store.list_rollouts(service, limit=100)

    def only_rollout(self, digest: str, service: str = "iris") -> Rollout:
        """The single rollout of a digest."""
        found = [r for r in self.rollouts(service) if r.digest == digest]
        assert len(found) == 1, f"expected one rollout of {digest}, got {found}"
        return found[0]


if TYPE_CHECKING:  # mypy proves the fakes still satisfy the Protocols they stand in for
    _store: Store = InMemoryStore()
    _serving: ServingProvider = FakeServing()
    _publisher: Publisher = RecordingPublisher()
