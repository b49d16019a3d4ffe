"""Helpers for local-cluster tests: fakes behind the controller, kubectl runner, object builders."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client as k8s

from local.kube.contracts import RevisionPhase, RevisionSpec, RevisionState, RouteTarget

T = TypeVar("T")

GROUP, VERSION = "serving.knative.dev", "v1"
# CustomObjectsApi's methods return decoded JSON declared as ``object``; tests index into the
# results, so they hold the API as Any.
CustomObjects = Any
KUBECTL_MISSING = "kubectl not found: install the Debian package google-cloud-cli or kubectl"


class FakeRuntime:
    """A RevisionRuntime for controller tests: the image name decides what happens.

    Images containing ``missing`` fail with ContainerMissing, ``crash`` with ExitCode1,
    ``pending`` stay Pending (tests move them with ``set_state``); anything else is Ready.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.specs: dict[tuple[str, str], RevisionSpec] = {}
        self.states: dict[tuple[str, str], RevisionState] = {}
        self.stopped: list[tuple[str, str]] = []
        self._listener: Callable[[str, str], None] | None = None

    @staticmethod
    def _outcome(image: str) -> RevisionState:
        if "missing" in image:
            return RevisionState(
                RevisionPhase.FAILED,
                "ContainerMissing",
                f'Unable to fetch image "{image}"',
                "ContainerHealthy",
            )
        if "crash" in image:
            return RevisionState(
                RevisionPhase.FAILED,
                "ExitCode1",
                "Container failed with exit code 1",
                "ContainerHealthy",
            )
        if "pending" in image:
            return RevisionState(RevisionPhase.PENDING, port=40000)
        return RevisionState(RevisionPhase.READY, port=40001)

    def ensure_running(self, spec: RevisionSpec) -> None:
        key = (spec.namespace, spec.revision)
        with self._lock:
            if key in self.specs:
                return
            self.specs[key] = spec
            self.states[key] = self._outcome(spec.image)
        self._notify(*key)

    def state(self, namespace: str, revision: str) -> RevisionState | None:
        with self._lock:
            return self.states.get((namespace, revision))

    def set_state(self, namespace: str, revision: str, state: RevisionState) -> None:
        """Move a revision to a new state and tell the controller, as the real runtime does."""
        with self._lock:
            self.states[(namespace, revision)] = state
        self._notify(namespace, revision)

    def stop(self, namespace: str, revision: str) -> None:
        with self._lock:
            if self.specs.pop((namespace, revision), None) is not None:
                self.states.pop((namespace, revision), None)
                self.stopped.append((namespace, revision))

    def stop_all(self) -> None:
        with self._lock:
            self.stopped.extend(self.specs)
            self.specs.clear()
            self.states.clear()

    def set_listener(self, listener: Callable[[str, str], None]) -> None:
        self._listener = listener

    def running(self, namespace: str) -> set[str]:
        """Revisions of a namespace the runtime was asked to run and not stopped."""
        with self._lock:
            return {revision for ns, revision in self.specs if ns == namespace}

    def _notify(self, namespace: str, revision: str) -> None:
        if self._listener is not None:
            self._listener(namespace, revision)


class FakeRouter:
    """A Router that remembers what the controller pushed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.routes: dict[tuple[str, str], list[RouteTarget]] = {}
        self.removed: list[tuple[str, str]] = []

    def set_routes(self, namespace: str, service: str, targets: list[RouteTarget]) -> None:
        with self._lock:
            self.routes[(namespace, service)] = list(targets)

    def remove_routes(self, namespace: str, service: str) -> None:
        with self._lock:
            self.routes.pop((namespace, service), None)
            self.removed.append((namespace, service))

    def current(self, namespace: str, service: str) -> list[RouteTarget] | None:
        """The last traffic table pushed for a Service."""
        with self._lock:
            return self.routes.get((namespace, service))


class Kubectl:
    """Runs kubectl against one API server with an isolated cache and no user kubeconfig."""

    def __init__(self, binary: str, server: str, cache_dir: Path) -> None:
        self.binary = binary
        self.server = server
        self.cache_dir = cache_dir

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl --server=URL args...``; with ``check`` a failure shows stderr."""
        command = [self.binary, f"--server={self.server}", f"--cache-dir={self.cache_dir}", *args]
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environment(),
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def environment(self) -> dict[str, str]:
        """The process environment with a kubeconfig that does not exist (no user contexts)."""
        return {**os.environ, "KUBECONFIG": str(self.cache_dir / "no-kubeconfig")}

    def json(self, *args: str) -> Any:
        """Run with ``-o json`` and parse the output."""
        return json.loads(self(*args, "-o", "json").stdout)


def wait_until(
    condition: Callable[[], T | None], timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``condition`` every 20 ms until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def knative_service(
    name: str,
    image: str = "example.test/app:v1",
    *,
    template_name: str | None = None,
    traffic: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Knative Service manifest."""
    container: dict[str, Any] = {"image": image}
    if env:
        container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    template: dict[str, Any] = {"spec": {"containers": [container]}}
    template_metadata: dict[str, Any] = {}
    if template_name:
        template_metadata["name"] = template_name
    if annotations:
        template_metadata["annotations"] = annotations
    if template_metadata:
        template["metadata"] = template_metadata
    spec: dict[str, Any] = {"template": template}
    if traffic is not None:
        spec["traffic"] = traffic
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Service",
        "metadata": metadata,
        "spec": spec,
    }


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The condition ``kind`` of an object's status ({} when absent)."""
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return {}


def is_ready(obj: dict[str, Any] | None) -> bool:
    """Ready=True and the status reflects the current generation."""
    if not obj:
        return False
    status = obj.get("status") or {}
    return condition(obj, "Ready").get("status") == "True" and status.get(
        "observedGeneration"
    ) == obj["metadata"].get("generation")


def settled(obj: dict[str, Any] | None) -> bool:
    """The status reflects the current generation and Ready is decided (True or False)."""
    if not obj:
        return False
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"].get("generation") and condition(
        obj, "Ready"
    ).get("status") in ("True", "False")


def raw_request(
    api_client: Any,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """An HTTP call through the kubernetes client's REST layer: (status, parsed JSON body)."""
    response = api_client.call_api(
        method, api_client.configuration.host + path, header_params=headers or {}, body=body
    )
    data = response.read()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data


class Knative:
    """Small conveniences over CustomObjectsApi for one namespace."""

    def __init__(self, api: CustomObjects, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Knative Service."""
        return dict(
            self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "services", body
            )
        )

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        """A Knative object, or None if it does not exist."""
        try:
            return dict(
                self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
            )
        except k8s.ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch a Knative Service."""
        return dict(
            self.api.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "services", name, patch
            )
        )

    def revisions(self) -> list[str]:
        """Names of the namespace's revisions."""
        listed = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "revisions")
        return [item["metadata"]["name"] for item in listed["items"]]


def error_body(error: Any) -> dict[str, Any]:
    """The ``Status`` body of an ApiException."""
    body = json.loads(error.body or "{}")
    assert isinstance(body, dict)
    return body
