"""Dependency checks for /healthz: is Firestore answering, is the Kubernetes API answering, quickly."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.logs import get_logger

log = get_logger("health")


class Probe(Protocol):
    """One dependency's check: returns when it answered, raises (any error) when it did not."""

    name: str

    def check(self) -> None:
        """Ask the dependency something cheap, within the probe's own short timeout."""
        ...


@dataclass(frozen=True)
class Health:
    """What /healthz answers: 200 with every dependency up, else 503 naming what is down and why."""

    status: int
    body: dict[str, Any]


def check_all(probes: Sequence[Probe]) -> Health:
    """Run every probe (one after the other, each bounded by its own timeout) and summarise."""
    up: dict[str, float] = {}
    down: dict[str, str] = {}
    for probe in probes:
        started = time.monotonic()
        try:
            probe.check()
        except Exception as exc:  # a health check reports every failure, it never raises one
            reason = f"{type(exc).__name__}: {exc}"[:300]
            down[probe.name] = reason
            log.error("%s is down: %s", probe.name, reason, extra={"dependency": probe.name})
        else:
            up[probe.name] = round(time.monotonic() - started, 3)
    body: dict[str, Any] = {"ok": not down, "up": sorted(up), "down": down, "seconds": up}
    return Health(200 if not down else 503, body)


class FirestoreProbe:
    """Reads one (possibly missing) document, without retries, within `timeout_seconds`."""

    name = "firestore"

    def __init__(self, project: str, timeout_seconds: float) -> None:
        self._project = project
        self._timeout = timeout_seconds
        self._db: Any = None

    def check(self) -> None:
        """A missing document is a fine answer: the point is that Firestore answered."""
        if self._db is None:  # made here, so a client that cannot even be made reports as down
            from google.cloud import firestore

            self._db = firestore.Client(project=self._project)
        self._db.collection("services").document("hekaton-health").get(
            retry=None, timeout=self._timeout
        )


class KubeProbe:
    """GET /version of the Kubernetes API within `timeout_seconds` (no data, any caller may read it)."""

    name = "kubernetes"

    def __init__(
        self, kube_server: str | None, ca_data: str | None, timeout_seconds: float
    ) -> None:
        self._server, self._ca_data, self._timeout = kube_server, ca_data, timeout_seconds
        self._api: Any = None

    def check(self) -> None:
        """The API server's version: answered by any server that is up."""
        from kubernetes import client as k8s

        from shared.knative import api_client

        if self._api is None:  # no kubeconfig, no in-cluster account: reported as down
            self._api = api_client(self._server, self._ca_data, timeout_seconds=self._timeout)
        k8s.VersionApi(self._api).get_code()
