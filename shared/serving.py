"""The serving boundary: what the steps need from Knative, as a small Protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

CANDIDATE_TAG = "candidate"
# Label on every Istio policy hekaton creates for a service, so deleting the service finds them.
MANAGED_FOR_LABEL = "hekaton.dev/service"
STABLE_TAG = "stable"
# The stable revision before the last promotion, kept routed at 0 % during its warm window.
PREVIOUS_TAG = "previous"


@dataclass(frozen=True)
class TrafficTarget:
    """One traffic entry, always pinned to a revision by name."""

    revision: str
    percent: int
    tag: str | None = None
    url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The `{revision, percent, tag}` shape shown by status."""
        return {"revision": self.revision, "percent": self.percent, "tag": self.tag}


@dataclass(frozen=True)
class RevisionHealth:
    """A revision's readiness as Knative reports it."""

    exists: bool
    ready: bool | None  # None: still deciding (condition Unknown)
    reason: str | None = None
    message: str | None = None
    # The Knative Service the revision belongs to (its `serving.knative.dev/service` label).
    service: str | None = None


@dataclass(frozen=True)
class ServiceView:
    """What the cluster says about a Knative Service."""

    name: str
    namespace: str
    traffic: list[TrafficTarget] = field(default_factory=list)  # status.traffic as reported
    latest_created_revision: str | None = None
    latest_ready_revision: str | None = None
    ready: bool | None = None
    reason: str | None = None
    url: str | None = None
    # spec.traffic as last written (status trails it while the Route reconciles), and the object's
    # resourceVersion, so a repair can be conditional on nothing having written since it read.
    spec_traffic: list[TrafficTarget] = field(default_factory=list)
    resource_version: str | None = None

    def serving_revision(self) -> str | None:
        """The revision holding the largest share of traffic (the de-facto stable one)."""
        live = [t for t in self.traffic if t.percent > 0]
        return max(live, key=lambda t: t.percent).revision if live else None


@dataclass(frozen=True)
class RevisionTemplate:
    """The parts of a revision hekaton sets; the rest of the existing template is kept."""

    name: str
    image: str
    # Container env entries as Kubernetes writes them: {name, value} or {name, valueFrom}.
    env: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)  # the container's `resources`
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    container_concurrency: int | None = None


class ServingProvider(Protocol):
    """Creates revisions and moves traffic (Knative Serving in production)."""

    def get_service(self, namespace: str, name: str) -> ServiceView | None:
        """The Service's status, or None when it does not exist."""
        ...

    def revision_exists(self, namespace: str, revision: str) -> bool:
        """Whether a Revision of that name exists."""
        ...

    def deploy(
        self, namespace: str, name: str, template: RevisionTemplate, traffic: list[TrafficTarget]
    ) -> None:
        """Create or update the Service so `template` becomes a revision, with `traffic`; idempotent."""
        ...

    def set_traffic(
        self,
        namespace: str,
        name: str,
        traffic: list[TrafficTarget],
        *,
        if_version: str | None = None,
    ) -> None:
        """Replace the Service's traffic block with absolute weights; idempotent. With `if_version`,
        only if the Service is still at that resourceVersion (else RetryableError: it moved)."""
        ...

    def revision_health(self, namespace: str, revision: str) -> RevisionHealth:
        """A Revision's Ready condition and the reason when it failed."""
        ...

    def delete_service(self, namespace: str, name: str) -> bool:
        """Delete the Service (its revisions go with it) and the Istio policies hekaton labelled for
        it; idempotent. True if the Service existed."""
        ...


def same_routes(a: list[TrafficTarget], b: list[TrafficTarget]) -> bool:
    """Whether two traffic blocks route alike (revision, percent and tag; order and URLs aside)."""

    def key(traffic: list[TrafficTarget]) -> list[tuple[str, int, str]]:
        return sorted((t.revision, t.percent, t.tag or "") for t in traffic)

    return key(a) == key(b)
