"""Contracts between the local API server's Knative controller, the revision runtime and the gateway.

The controller (``local.kube.knative_controller``) reconciles Knative objects stored in the API
server.  It asks a ``RevisionRuntime`` to run a Revision's container as a real process and reads
back its state; it tells a ``Router`` (the ingress gateway) where traffic for a Service goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class RevisionPhase(StrEnum):
    """Lifecycle of one revision process, as the controller needs to see it."""

    PENDING = "Pending"  # started (or about to be), readiness probe not answered yet
    READY = "Ready"  # readiness probe (GET /healthz) answered 200
    FAILED = "Failed"  # will not become ready; reason says why (Knative's reason strings)


@dataclass(frozen=True)
class RevisionState:
    """What the runtime knows about one revision."""

    phase: RevisionPhase
    # Knative reasons: "ContainerMissing", "ExitCode<N>", "ProgressDeadlineExceeded"; None when fine.
    reason: str | None = None
    message: str | None = None
    # Which condition the failure belongs to in Knative: "ContainerHealthy" or "ResourcesAvailable".
    condition: str | None = None
    port: int | None = None  # loopback port the process listens on ($PORT), once started


@dataclass(frozen=True)
class RevisionSpec:
    """Everything the runtime needs to start a revision's container."""

    namespace: str
    service: str
    revision: str
    image: str  # "repo:tag", "repo@sha256:<hex>" or "repo:tag@sha256:<hex>"
    env: dict[str, str] = field(default_factory=dict)
    progress_deadline_seconds: float = 120.0


class RevisionRuntime(Protocol):
    """Runs revisions as local processes (one per revision; Knative's runtime contract: $PORT)."""

    def ensure_running(self, spec: RevisionSpec) -> None:
        """Start the revision if it is not running yet; idempotent."""

    def state(self, namespace: str, revision: str) -> RevisionState | None:
        """Current state, or None if the runtime has never heard of this revision."""

    def stop(self, namespace: str, revision: str) -> None:
        """Stop the revision's process (revision deleted); idempotent."""

    def stop_all(self) -> None:
        """Stop every process (stack going down)."""

    def set_listener(self, listener: Callable[[str, str], None]) -> None:
        """Call listener(namespace, revision) whenever a revision's state changes."""


@dataclass(frozen=True)
class RouteTarget:
    """One entry of a Service's effective traffic (status.traffic) with the process to reach."""

    revision: str
    percent: int
    tag: str | None = None


class Router(Protocol):
    """The ingress gateway's view of routing; the controller pushes each Service's traffic here."""

    def set_routes(self, namespace: str, service: str, targets: list[RouteTarget]) -> None:
        """Replace the traffic table for one Service (weights of 0 still reachable by tag)."""

    def remove_routes(self, namespace: str, service: str) -> None:
        """Forget a Service (deleted)."""
