"""ServingProvider on Knative Serving v1 through the Kubernetes API (CustomObjectsApi)."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from shared import metering
from shared.errors import GoneFromCluster, PermanentError, RetryableError
from shared.logs import get_logger
from shared.serving import (
    MANAGED_FOR_LABEL,
    RevisionHealth,
    RevisionTemplate,
    ServiceView,
    TrafficTarget,
)

GROUP = "serving.knative.dev"
VERSION = "v1"
MERGE_PATCH = "application/merge-patch+json"
SERVICE_LABEL = "serving.knative.dev/service"  # set by Knative on every revision of a Service
ISTIO_SECURITY = "security.istio.io"
ISTIO_VERSION = "v1"
ISTIO_POLICIES = ("authorizationpolicies", "requestauthentications")
# Knative puts the container-level failure on one of these conditions.
_FAILURE_CONDITIONS = ("ContainerHealthy", "ResourcesAvailable", "Ready")
log = get_logger("kube")


def api_client(
    kube_server: str | None, ca_data: str | None = None, *, timeout_seconds: float = 5.0
) -> k8s.ApiClient:
    """A Kubernetes API client whose every request ends within `timeout_seconds`.

    Plain http URL: the local cluster. https URL: a GKE endpoint, authenticated with the function's own
    Google credentials (GKE accepts OAuth access tokens) and verified against `ca_data` (base64 PEM).
    No URL: in-cluster credentials, else the kubeconfig.
    """
    if kube_server:
        configuration = k8s.Configuration()
        configuration.host = kube_server
        if kube_server.startswith("https://"):
            _use_google_credentials(configuration, ca_data)
    else:
        try:
            k8s_config.load_incluster_config()
        except k8s_config.ConfigException:
            k8s_config.load_kube_config()
        configuration = k8s.Configuration.get_default_copy()
    # urllib3 would otherwise retry a refused connection 3 times on its own: Pub/Sub retries.
    configuration.retries = False
    return BoundedApiClient(configuration, timeout_seconds=timeout_seconds)


class BoundedApiClient(k8s.ApiClient):
    """An ApiClient that gives every request a deadline, and turns an unreachable or stalled API
    server into a RetryableError naming the host and the settings to check (logged at ERROR)."""

    def __init__(self, configuration: k8s.Configuration, *, timeout_seconds: float) -> None:
        super().__init__(configuration)
        self.timeout_seconds = timeout_seconds

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        """The request, with the client's timeout unless the call brings its own."""
        kwargs["_request_timeout"] = kwargs.get("_request_timeout") or self.timeout_seconds
        try:
            return super().call_api(*args, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            host = self.configuration.host
            stalled = isinstance(exc, urllib3.exceptions.ReadTimeoutError)
            what = (
                f"did not answer within {kwargs['_request_timeout']}s"
                if stalled
                else f"is unreachable ({type(exc).__name__})"
            )
            message = (
                f"Kubernetes API at {host} {what}: check that the cluster is up and "
                "HEKATON_KUBE_SERVER points at it (timeout: HEKATON_KUBE_TIMEOUT_SECONDS)"
            )
            log.error(message, extra={"dependency": "kubernetes", "host": host})
            raise RetryableError(message) from exc


def _use_google_credentials(configuration: k8s.Configuration, ca_data: str | None) -> None:
    import base64
    import tempfile

    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])

    def refresh(config: k8s.Configuration) -> None:
        # Tokens last an hour; refresh before each request batch when stale.
        if not credentials.valid:
            credentials.refresh(google.auth.transport.requests.Request())
        config.api_key = {"authorization": f"Bearer {credentials.token}"}

    configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]
    refresh(configuration)
    if ca_data:
        with tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False) as handle:
            handle.write(base64.b64decode(ca_data))
        configuration.ssl_ca_cert = handle.name


class Missing(Exception):
    """The object (or its kind) does not exist."""


def kube_call(what: str, fn: Any, *, missing_ok: bool = False, allow_conflict: bool = False) -> Any:
    """Run one Kubernetes API call: 404 raises Missing (when `missing_ok`), 409/429/5xx and an
    unreachable server are retryable, any other refusal permanent."""
    metering.count(metering.KUBE_CALLS)
    try:
        return fn()
    except ApiException as exc:
        if exc.status == 404 and missing_ok:
            raise Missing() from exc
        if exc.status == 409 and allow_conflict:
            raise RetryableError(f"{what}: created concurrently, will retry as an update") from exc
        if exc.status in (409, 429) or (exc.status or 0) >= 500:
            raise RetryableError(f"{what} failed ({exc.status} {exc.reason})") from exc
        if exc.status == 404:
            raise GoneFromCluster(
                f"{what}: not found in the cluster ({_status_message(exc)})"
            ) from exc
        raise PermanentError(f"{what} was refused ({exc.status}): {_status_message(exc)}") from exc
    except OSError as exc:  # connection refused/reset: the API server is unreachable
        raise RetryableError(f"{what}: Kubernetes API unreachable ({exc})") from exc


class KnativeServing:
    """Knative Services and Revisions via the Kubernetes API."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self._objects = k8s.CustomObjectsApi(api)

    def get_service(self, namespace: str, name: str) -> ServiceView | None:
        """The Service's status, or None when it does not exist."""
        body = self._get("services", namespace, name)
        return None if body is None else service_view(body)

    def revision_exists(self, namespace: str, revision: str) -> bool:
        """Whether a Revision of that name exists."""
        return self._get("revisions", namespace, revision) is not None

    def deploy(
        self, namespace: str, name: str, template: RevisionTemplate, traffic: list[TrafficTarget]
    ) -> None:
        """Create or update the Service so `template` becomes a revision, with `traffic`; idempotent."""
        current = self._get("services", namespace, name)
        if current is None:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"template": _template(None, template), "traffic": _traffic(traffic)},
            }
            self._call(
                "create Knative Service",
                lambda: self._objects.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "services", body
                ),
                allow_conflict=True,
            )
            return
        patch = {
            "spec": {
                "template": _template(current.get("spec", {}).get("template"), template),
                "traffic": _traffic(traffic),
            }
        }
        self._patch(namespace, name, patch)

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
        patch: dict[str, Any] = {"spec": {"traffic": _traffic(traffic)}}
        if if_version is not None:
            # A merge patch naming a resourceVersion is refused with 409 if the object moved on.
            patch["metadata"] = {"resourceVersion": if_version}
        self._patch(namespace, name, patch)

    def revision_health(self, namespace: str, revision: str) -> RevisionHealth:
        """A Revision's Ready condition and the reason when it failed."""
        body = self._get("revisions", namespace, revision)
        if body is None:
            return RevisionHealth(exists=False, ready=None)
        conditions = {c.get("type"): c for c in body.get("status", {}).get("conditions", [])}
        ready = conditions.get("Ready", {})
        owner = (body.get("metadata", {}).get("labels") or {}).get(SERVICE_LABEL)
        if ready.get("status") == "True":
            return RevisionHealth(exists=True, ready=True, service=owner)
        if ready.get("status") == "False":
            for kind in _FAILURE_CONDITIONS:
                cond = conditions.get(kind, {})
                if cond.get("status") == "False":
                    return RevisionHealth(
                        True, False, cond.get("reason"), cond.get("message"), service=owner
                    )
        return RevisionHealth(
            exists=True,
            ready=None,
            reason=ready.get("reason"),
            message=ready.get("message"),
            service=owner,
        )

    def delete_service(self, namespace: str, name: str) -> bool:
        """Delete the Service (its revisions go with it) and the Istio policies hekaton labelled for
        it; idempotent. True if the Service existed."""
        for plural in ISTIO_POLICIES:
            self._delete_labelled(namespace, plural, f"{MANAGED_FOR_LABEL}={name}")
        try:
            self._call(
                f"delete Knative Service {namespace}/{name}",
                lambda: self._objects.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, "services", name
                ),
                missing_ok=True,
            )
        except Missing:
            return False
        return True

    def _delete_labelled(self, namespace: str, plural: str, selector: str) -> None:
        try:
            found = self._call(
                f"list {plural} in {namespace}",
                lambda: self._objects.list_namespaced_custom_object(
                    ISTIO_SECURITY, ISTIO_VERSION, namespace, plural, label_selector=selector
                ),
                missing_ok=True,
            )
        except Missing:
            return  # no Istio security API in this cluster: nothing of ours to remove
        for item in found.get("items", []):
            policy = item["metadata"]["name"]
            with contextlib.suppress(Missing):  # deleted meanwhile
                self._call(
                    f"delete {plural} {namespace}/{policy}",
                    lambda policy=policy: self._objects.delete_namespaced_custom_object(
                        ISTIO_SECURITY, ISTIO_VERSION, namespace, plural, policy
                    ),
                    missing_ok=True,
                )

    # helpers ------------------------------------------------------------------------------
    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call(
                f"read {plural[:-1]} {namespace}/{name}",
                lambda: self._objects.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name
                ),
                missing_ok=True,
            )
        except Missing:
            return None

    def _patch(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._call(
            f"patch Knative Service {namespace}/{name}",
            lambda: self._objects.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "services", name, patch, _content_type=MERGE_PATCH
            ),
        )

    _call = staticmethod(kube_call)


def _status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


# On the template: what hekaton set there last time, so a setting the spec no longer has is removed
# (the rest of the template, what the team configured by other means, is kept as it is).
MANAGED_ANNOTATION = "hekaton.dev/managed"


def _managed(template: RevisionTemplate) -> dict[str, Any]:
    """The keys of the template that hekaton sets, as recorded in MANAGED_ANNOTATION."""
    return {
        "annotations": sorted(template.annotations),
        "env": sorted(e["name"] for e in template.env if "name" in e),
        "resources": bool(template.resources),
        "nodeSelector": sorted(template.node_selector),
        "tolerations": [dict(t) for t in template.tolerations],
        "containerConcurrency": template.container_concurrency is not None,
    }


def _previously_managed(annotations: dict[str, Any]) -> dict[str, Any]:
    try:
        recorded = json.loads(annotations.get(MANAGED_ANNOTATION) or "{}")
    except ValueError:
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _template(current: dict[str, Any] | None, template: RevisionTemplate) -> dict[str, Any]:
    """Merge hekaton's parts into the existing template, keeping everything else the team
    configured, and removing what hekaton itself set before but the spec no longer asks for."""
    result = copy.deepcopy(current) if current else {}
    metadata = result.setdefault("metadata", {})
    metadata["name"] = template.name
    annotations = metadata.setdefault("annotations", {})
    before = _previously_managed(annotations)
    for key in set(before.get("annotations") or []) - set(template.annotations):
        annotations.pop(key, None)
    annotations.update(template.annotations)
    spec = result.setdefault("spec", {})
    containers = spec.setdefault("containers", [{}])
    container = containers[0]
    container["image"] = template.image
    dropped_env = set(before.get("env") or []) - {e.get("name") for e in template.env}
    env = {
        e["name"]: e
        for e in container.get("env", [])
        if "name" in e and e["name"] not in dropped_env
    }
    env.update({e["name"]: e for e in template.env})
    if env:
        container["env"] = sorted(env.values(), key=lambda e: e["name"])
    else:
        container.pop("env", None)
    if template.resources:
        container["resources"] = copy.deepcopy(template.resources)
    elif before.get("resources"):
        container.pop("resources", None)
    selector = {
        k: v
        for k, v in spec.get("nodeSelector", {}).items()
        if k not in set(before.get("nodeSelector") or []) - set(template.node_selector)
    }
    selector.update(template.node_selector)
    if selector:
        spec["nodeSelector"] = selector
    else:
        spec.pop("nodeSelector", None)
    ours = [dict(t) for t in template.tolerations]
    dropped = [t for t in before.get("tolerations") or [] if t not in ours]
    kept = [t for t in spec.get("tolerations", []) if t not in ours and t not in dropped]
    if kept or ours:
        spec["tolerations"] = kept + ours
    else:
        spec.pop("tolerations", None)
    if template.container_concurrency is not None:
        spec["containerConcurrency"] = template.container_concurrency
    elif before.get("containerConcurrency"):
        spec.pop("containerConcurrency", None)
    annotations[MANAGED_ANNOTATION] = json.dumps(_managed(template), sort_keys=True)
    return result


def _traffic(traffic: list[TrafficTarget]) -> list[dict[str, Any]]:
    entries = []
    for target in traffic:
        entry: dict[str, Any] = {"revisionName": target.revision, "percent": target.percent}
        if target.tag:
            entry["tag"] = target.tag
        entries.append(entry)
    return entries


def service_view(body: dict[str, Any]) -> ServiceView:
    """Read the fields hekaton uses from a Knative Service object."""
    status = body.get("status", {})
    conditions = {c.get("type"): c for c in status.get("conditions", [])}
    ready = conditions.get("Ready", {})
    return ServiceView(
        name=body["metadata"]["name"],
        namespace=body["metadata"].get("namespace", "default"),
        traffic=[
            TrafficTarget(
                revision=t.get("revisionName", ""),
                percent=int(t.get("percent", 0) or 0),
                tag=t.get("tag"),
                url=t.get("url"),
            )
            for t in status.get("traffic", [])
        ],
        latest_created_revision=status.get("latestCreatedRevisionName"),
        latest_ready_revision=status.get("latestReadyRevisionName"),
        ready={"True": True, "False": False}.get(ready.get("status", "")),
        reason=ready.get("reason"),
        url=status.get("url"),
        spec_traffic=[
            TrafficTarget(
                revision=t.get("revisionName", ""),
                percent=int(t.get("percent", 0) or 0),
                tag=t.get("tag"),
            )
            for t in (body.get("spec") or {}).get("traffic") or []
        ],
        resource_version=(body.get("metadata") or {}).get("resourceVersion"),
    )
