"""Dependency checks for /healthz: is Firestore answering, is the Kubernetes API answering, quickly."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.errors import HekatonError
from shared.logs import get_logger

log = get_logger("health")


class Probe(Protocol):
    """One dependency's check: returns when it answered, raises (any error) when it did not."""

    name: str

    def check(self) -> None:
        """Ask the dependency something cheap, within the probe's own short timeout."""
        ...


class DependencyDown(Exception):
    """A probe's dependency did not answer; the message says which, where, and what to check."""


def _down(what: str, timeout: float, check: str, exc: BaseException) -> DependencyDown:
    if isinstance(exc, HekatonError) and exc.__cause__ is not None:
        exc = exc.__cause__  # the client's own error: hekaton's wrapper names a step's settings
    detail = " ".join(str(exc).split())[:160]
    return DependencyDown(
        f"{what} gave no answer (this check waits {timeout:g}s: HEKATON_HEALTH_TIMEOUT_SECONDS): "
        f"{check} [{type(exc).__name__}: {detail}]"
    )


@dataclass(frozen=True)
class Health:
    """What /healthz answers: 200 with every dependency up, else 503 naming what is down and why."""

    status: int
    body: dict[str, Any]


def check_all(probes: Sequence[Probe]) -> Health:
    """Run every probe (one after the other, each bounded by its own timeout) and summarise."""
    up: list[str] = []
    down: dict[str, str] = {}
    seconds: dict[str, float] = {}  # how long each took, the ones down too (a stall shows here)
    for probe in probes:
        started = time.monotonic()
        try:
            probe.check()
        except Exception as exc:  # a health check reports every failure, it never raises one
            reason = str(exc) if isinstance(exc, DependencyDown) else f"{type(exc).__name__}: {exc}"
            down[probe.name] = reason[:500]
            log.error("%s is down: %s", probe.name, reason, extra={"dependency": probe.name})
        else:
            up.append(probe.name)
        seconds[probe.name] = round(time.monotonic() - started, 3)
    body: dict[str, Any] = {"ok": not down, "up": sorted(up), "down": down, "seconds": seconds}
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
        emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
        where = (
            f"Firestore emulator at {emulator} (FIRESTORE_EMULATOR_HOST)"
            if emulator
            else f"Firestore of project {self._project} (HEKATON_PROJECT)"
        )
        try:
            if self._db is None:  # made here, so a client that cannot be made reports as down
                from google.cloud import firestore

                self._db = firestore.Client(project=self._project)
            self._db.collection("services").document("hekaton-health").get(
                retry=None, timeout=self._timeout
            )
        except Exception as exc:
            raise _down(where, self._timeout, "check that it is up and reachable", exc) from exc


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

        where = (
            f"Kubernetes API at {self._server} (HEKATON_KUBE_SERVER)"
            if self._server
            else "Kubernetes API of the kubeconfig or in-cluster account (HEKATON_KUBE_SERVER unset)"
        )
        try:
            if self._api is None:  # no kubeconfig, no in-cluster account: reported as down
                self._api = api_client(self._server, self._ca_data, timeout_seconds=self._timeout)
            k8s.VersionApi(self._api).get_code()
        except Exception as exc:
            raise _down(where, self._timeout, "check that the cluster is up", exc) from exc
