"""Knative Serving's reconcilers: Service -> Configuration + Route, Configuration -> Revisions,
Revision -> a process through the runtime, Route -> resolved traffic pushed to the gateway.

Each function is level-based and idempotent: it reads the current objects, computes what should
be, and writes only differences (a write that changes nothing stores nothing).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

from local.kube import conditions, resources
from local.kube.conditions import FALSE, TRUE, UNKNOWN, Condition
from local.kube.contracts import (
    RevisionPhase,
    RevisionRuntime,
    RevisionSpec,
    RevisionState,
    Router,
    RouteTarget,
)
from local.kube.errors import ApiError
from local.kube.knative_admission import progress_deadline_seconds
from local.kube.registry import Registry, metadata_of
from local.kube.resources import KNATIVE_GROUP, ResourceType

Obj = dict[str, Any]

SERVICES = resources.require(KNATIVE_GROUP, "v1", "services")
CONFIGURATIONS = resources.require(KNATIVE_GROUP, "v1", "configurations")
ROUTES = resources.require(KNATIVE_GROUP, "v1", "routes")
REVISIONS = resources.require(KNATIVE_GROUP, "v1", "revisions")

SERVICE_LABEL = "serving.knative.dev/service"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
GENERATION_LABEL = "serving.knative.dev/configurationGeneration"
ROUTE_LABEL = "serving.knative.dev/route"
API_VERSION = f"{KNATIVE_GROUP}/v1"


@dataclass
class Context:
    """What the reconcilers share: the API, the process runtime, the gateway, the domain."""

    registry: Registry
    runtime: RevisionRuntime
    router: Router
    domain: str
    pushed_routes: dict[tuple[str, str], list[RouteTarget]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


# ---------------------------------------------------------------- helpers


def _owner_reference(obj: Obj) -> Obj:
    metadata = obj["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": obj["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _controlled_by(obj: Obj, owner: Obj) -> bool:
    uid = owner["metadata"]["uid"]
    return any(
        isinstance(ref, dict) and ref.get("uid") == uid and ref.get("controller")
        for ref in metadata_of(obj).get("ownerReferences") or []
    )


def _labels(obj: Obj) -> dict[str, str]:
    return dict(metadata_of(obj).get("labels") or {})


def _write_status(context: Context, resource: ResourceType, obj: Obj, status: Obj) -> None:
    """Store ``status`` if it differs (a conflict propagates and the key is retried)."""
    if obj.get("status") == status:
        return
    metadata = obj["metadata"]
    context.registry.replace_status(
        resource, metadata["namespace"], metadata["name"], status, metadata["resourceVersion"]
    )


def _ensure_child(
    context: Context, resource: ResourceType, desired: Obj, owner: Obj
) -> tuple[Obj | None, bool]:
    """Create or update an owned child to the desired spec/labels; (child, owned by us)."""
    metadata = desired["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    current = context.registry.find(resource, namespace, name)
    if current is None:
        return context.registry.create(resource, namespace, desired), True
    if not _controlled_by(current, owner):
        return current, False
    if current.get("spec") == desired["spec"] and _labels(current) == metadata.get("labels", {}):
        return current, True
    updated = copy.deepcopy(current)
    updated["spec"] = desired["spec"]
    updated["metadata"]["labels"] = metadata.get("labels", {})
    return context.registry.update(resource, namespace, name, updated), True


def _out_of_date(kind: str, condition_type: str) -> Condition:
    return Condition(
        condition_type,
        UNKNOWN,
        "OutOfDate",
        f"The {kind} is still working to reflect the latest desired specification.",
    )


def _reconciled(obj: Obj | None) -> bool:
    if obj is None:
        return False
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"].get("generation")


def _url(context: Context, host_name: str, namespace: str) -> str:
    return f"http://{host_name}.{namespace}.{context.domain}"


# ---------------------------------------------------------------- Service


def reconcile_service(context: Context, namespace: str, name: str) -> None:
    """Own a Configuration and a Route named like the Service; mirror their status."""
    service = context.registry.find(SERVICES, namespace, name)
    if service is None or metadata_of(service).get("deletionTimestamp"):
        return
    spec = service.get("spec") or {}
    owner = [_owner_reference(service)]
    labels = {**_labels(service), SERVICE_LABEL: name}
    configuration, configuration_owned = _ensure_child(
        context,
        CONFIGURATIONS,
        {
            "apiVersion": API_VERSION,
            "kind": "Configuration",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": owner,
            },
            "spec": {"template": copy.deepcopy(spec.get("template"))},
        },
        service,
    )
    traffic = []
    for target in spec.get("traffic") or []:
        entry = copy.deepcopy(target)
        if entry.get("latestRevision"):
            entry["configurationName"] = name
        traffic.append(entry)
    route, route_owned = _ensure_child(
        context,
        ROUTES,
        {
            "apiVersion": API_VERSION,
            "kind": "Route",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": owner,
            },
            "spec": {"traffic": traffic},
        },
        service,
    )
    _write_status(
        context,
        SERVICES,
        service,
        _service_status(service, configuration, configuration_owned, route, route_owned),
    )


def _service_status(
    service: Obj,
    configuration: Obj | None,
    configuration_owned: bool,
    route: Obj | None,
    route_owned: bool,
) -> Obj:
    previous = service.get("status") or {}
    name = service["metadata"]["name"]
    status: Obj = {"observedGeneration": service["metadata"]["generation"]}
    if not configuration_owned:
        configurations_ready = Condition(
            "ConfigurationsReady",
            FALSE,
            "NotOwned",
            f'There is an existing Configuration "{name}" that we do not own.',
        )
    elif not _reconciled(configuration):
        configurations_ready = _out_of_date("Configuration", "ConfigurationsReady")
    else:
        found = conditions.find(configuration, "Ready") or Condition("Ready", UNKNOWN)
        configurations_ready = Condition(
            "ConfigurationsReady", found.status, found.reason, found.message
        )
    if configuration_owned and configuration is not None:
        for key in ("latestCreatedRevisionName", "latestReadyRevisionName"):
            value = (configuration.get("status") or {}).get(key)
            if value:
                status[key] = value
    if not route_owned:
        routes_ready = Condition(
            "RoutesReady",
            FALSE,
            "NotOwned",
            f'There is an existing Route "{name}" that we do not own.',
        )
    elif not _reconciled(route):
        routes_ready = _out_of_date("Route", "RoutesReady")
    else:
        found = conditions.find(route, "Ready") or Condition("Ready", UNKNOWN)
        routes_ready = Condition("RoutesReady", found.status, found.reason, found.message)
    if route_owned and route is not None:
        route_status = route.get("status") or {}
        for key in ("url", "address"):
            if key in route_status:
                status[key] = copy.deepcopy(route_status[key])
        if "traffic" in route_status:
            status["traffic"] = [
                {k: v for k, v in target.items() if k != "configurationName"}
                for target in route_status["traffic"]
            ]
    ready = conditions.aggregate("Ready", [configurations_ready, routes_ready])
    status["conditions"] = conditions.render(
        previous.get("conditions"), [configurations_ready, routes_ready, ready]
    )
    return status


# ---------------------------------------------------------------- Configuration


def revision_name_for(configuration: Obj) -> str:
    """The revision the configuration's current generation stamps out (BYO name or -0000N)."""
    template = (configuration.get("spec") or {}).get("template") or {}
    byo = (template.get("metadata") or {}).get("name")
    if byo:
        return str(byo)
    return f"{configuration['metadata']['name']}-{int(configuration['metadata']['generation']):05d}"


def _stamped_revision(context: Context, configuration: Obj) -> Obj | None:
    """The revision this configuration stamped for its current generation, if any."""
    namespace, name = configuration["metadata"]["namespace"], configuration["metadata"]["name"]
    generation = str(configuration["metadata"]["generation"])
    for revision in context.registry.list_objects(REVISIONS, namespace).items:
        labels = _labels(revision)
        if (
            labels.get(CONFIGURATION_LABEL) == name
            and labels.get(GENERATION_LABEL) == generation
            and _controlled_by(revision, configuration)
        ):
            return revision
    return None


def _new_revision(configuration: Obj, revision_name: str) -> Obj:
    """The Revision a configuration's template stamps out: labels, annotations, owner, spec."""
    metadata = configuration["metadata"]
    template = copy.deepcopy((configuration.get("spec") or {}).get("template") or {})
    template_metadata = template.get("metadata") or {}
    labels = {
        **(template_metadata.get("labels") or {}),
        CONFIGURATION_LABEL: metadata["name"],
        GENERATION_LABEL: str(metadata["generation"]),
    }
    service = _labels(configuration).get(SERVICE_LABEL)
    if service:
        labels[SERVICE_LABEL] = service
    revision_metadata: Obj = {
        "name": revision_name,
        "namespace": metadata["namespace"],
        "labels": labels,
        "ownerReferences": [_owner_reference(configuration)],
    }
    if template_metadata.get("annotations"):
        revision_metadata["annotations"] = dict(template_metadata["annotations"])
    return {
        "apiVersion": API_VERSION,
        "kind": "Revision",
        "metadata": revision_metadata,
        "spec": template.get("spec") or {},
    }


def _created_condition(revision: Obj) -> Condition:
    """The configuration's Ready condition given its latest created revision."""
    created = conditions.find(revision, "Ready") or Condition("Ready", UNKNOWN)
    if created.status == TRUE:
        return Condition("Ready", TRUE)
    if created.status == FALSE:
        return Condition(
            "Ready",
            FALSE,
            "RevisionFailed",
            f'Revision "{revision["metadata"]["name"]}" failed with message: '
            f"{created.message or created.reason}.",
        )
    return Condition("Ready", UNKNOWN)


def reconcile_configuration(context: Context, namespace: str, name: str) -> None:
    """Stamp a Revision for the current generation; track latest created/ready revisions."""
    configuration = context.registry.find(CONFIGURATIONS, namespace, name)
    if configuration is None or metadata_of(configuration).get("deletionTimestamp"):
        return
    generation = int(configuration["metadata"]["generation"])
    previous = configuration.get("status") or {}
    status: Obj = {"observedGeneration": generation}
    revision = _stamped_revision(context, configuration)
    if revision is None:
        revision_name = revision_name_for(configuration)
        if context.registry.find(REVISIONS, namespace, revision_name) is None:
            revision = context.registry.create(
                REVISIONS, namespace, _new_revision(configuration, revision_name)
            )
        else:
            # The name belongs to another generation or owner: Knative refuses to reuse it.
            ready = Condition(
                "Ready",
                FALSE,
                "RevisionFailed",
                "Revision creation failed with message: "
                f'revisions.serving.knative.dev "{revision_name}" already exists.',
            )
            if previous.get("latestCreatedRevisionName"):
                status["latestCreatedRevisionName"] = previous["latestCreatedRevisionName"]
    if revision is not None:
        status["latestCreatedRevisionName"] = revision["metadata"]["name"]
        ready = _created_condition(revision)
    latest_ready = _latest_ready_revision(context, namespace, name, generation)
    if latest_ready:
        status["latestReadyRevisionName"] = latest_ready
    status["conditions"] = conditions.render(previous.get("conditions"), [ready])
    _write_status(context, CONFIGURATIONS, configuration, status)


def _latest_ready_revision(
    context: Context, namespace: str, configuration: str, generation: int
) -> str | None:
    """The newest ready revision stamped by this configuration (not newer than its generation)."""
    best: tuple[int, str] | None = None
    for revision in context.registry.list_objects(REVISIONS, namespace).items:
        labels = _labels(revision)
        if labels.get(CONFIGURATION_LABEL) != configuration:
            continue
        try:
            revision_generation = int(labels.get(GENERATION_LABEL, "0"))
        except ValueError:
            continue
        if revision_generation > generation or conditions.status_of(revision) != TRUE:
            continue
        candidate = (revision_generation, revision["metadata"]["name"])
        if best is None or candidate > best:
            best = candidate
    return best[1] if best else None


# ---------------------------------------------------------------- Revision


def _serving_container(spec: Obj) -> Obj:
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    for container in containers:
        if container.get("ports"):
            return container
    return containers[0] if containers else {}


def revision_spec(revision: Obj) -> RevisionSpec:
    """What the runtime needs to start a Revision's serving container."""
    metadata = revision["metadata"]
    container = _serving_container(revision.get("spec") or {})
    env = {
        str(variable["name"]): str(variable.get("value", ""))
        for variable in container.get("env") or []
        if isinstance(variable, dict) and variable.get("name") and "valueFrom" not in variable
    }
    labels = metadata.get("labels") or {}
    return RevisionSpec(
        namespace=metadata["namespace"],
        service=labels.get(SERVICE_LABEL) or labels.get(CONFIGURATION_LABEL) or metadata["name"],
        revision=metadata["name"],
        image=str(container.get("image", "")),
        env=env,
        progress_deadline_seconds=progress_deadline_seconds(metadata.get("annotations")),
    )


def revision_conditions(state: RevisionState | None) -> list[Condition]:
    """Knative's revision conditions for a runtime state."""
    if state is None or state.phase == RevisionPhase.PENDING:
        deploying = [
            Condition(kind, UNKNOWN, "Deploying")
            for kind in ("Active", "ContainerHealthy", "ResourcesAvailable", "Ready")
        ]
        return deploying
    if state.phase == RevisionPhase.READY:
        return [
            Condition(kind, TRUE)
            for kind in ("Active", "ContainerHealthy", "ResourcesAvailable", "Ready")
        ]
    failing = (
        state.condition
        if state.condition in ("ContainerHealthy", "ResourcesAvailable")
        else "ContainerHealthy"
    )
    other = "ResourcesAvailable" if failing == "ContainerHealthy" else "ContainerHealthy"
    return [
        Condition("Active", UNKNOWN),
        Condition(failing, FALSE, state.reason, state.message),
        Condition(other, UNKNOWN),
        Condition("Ready", FALSE, state.reason, state.message),
    ]


def reconcile_revision(context: Context, namespace: str, name: str) -> None:
    """Keep the revision's process running and mirror its state into conditions."""
    revision = context.registry.find(REVISIONS, namespace, name)
    if revision is None:
        context.runtime.stop(namespace, name)
        return
    spec = revision_spec(revision)
    context.runtime.ensure_running(spec)
    state = context.runtime.state(namespace, name)
    previous = revision.get("status") or {}
    ready = state is not None and state.phase == RevisionPhase.READY
    container = _serving_container(revision.get("spec") or {})
    container_status: Obj = {"name": container.get("name", "user-container")}
    if "@sha256:" in spec.image:
        container_status["imageDigest"] = spec.image
    status: Obj = {
        "observedGeneration": revision["metadata"]["generation"],
        "actualReplicas": 1 if ready else 0,
        "desiredReplicas": 1,
        "containerStatuses": [container_status],
        "conditions": conditions.render(previous.get("conditions"), revision_conditions(state)),
    }
    _write_status(context, REVISIONS, revision, status)


# ---------------------------------------------------------------- Route


@dataclass(frozen=True)
class _Problem:
    status: str  # False or Unknown
    reason: str
    message: str


def _resolve(context: Context, namespace: str, target: Obj) -> tuple[str | None, _Problem | None]:
    """The revision a traffic target points at now, or why it cannot be routed yet."""
    configuration_name = target.get("configurationName")
    if configuration_name:
        configuration = context.registry.find(CONFIGURATIONS, namespace, configuration_name)
        if configuration is None:
            return None, _Problem(
                FALSE,
                "ConfigurationMissing",
                f'Configuration "{configuration_name}" referenced in traffic not found.',
            )
        ready_name = (configuration.get("status") or {}).get("latestReadyRevisionName")
        if ready_name:
            return ready_name, None
        if conditions.status_of(configuration) == FALSE:
            return None, _Problem(
                FALSE,
                "RevisionMissing",
                f'Configuration "{configuration_name}" does not have any ready Revision.',
            )
        return None, _Problem(
            UNKNOWN,
            "RevisionMissing",
            f'Configuration "{configuration_name}" is waiting for a Revision to become ready.',
        )
    revision_name = target.get("revisionName")
    revision = context.registry.find(REVISIONS, namespace, str(revision_name))
    if revision is None:
        return None, _Problem(
            FALSE, "RevisionMissing", f'Revision "{revision_name}" referenced in traffic not found.'
        )
    ready = conditions.status_of(revision)
    if ready == FALSE:
        return None, _Problem(
            FALSE, "RevisionMissing", f'Revision "{revision_name}" failed to become ready.'
        )
    if ready != TRUE:
        return None, _Problem(
            UNKNOWN, "RevisionMissing", f'Revision "{revision_name}" is not yet ready.'
        )
    return str(revision_name), None


def _effective_traffic(context: Context, route: Obj, resolved: list[tuple[Obj, str]]) -> list[Obj]:
    """status.traffic: resolved names, tag URLs; untagged entries to one revision merged."""
    namespace, name = route["metadata"]["namespace"], route["metadata"]["name"]
    effective: list[Obj] = []
    untagged: dict[tuple[str, bool], Obj] = {}
    for target, revision_name in resolved:
        entry: Obj = {}
        tag = target.get("tag")
        if tag:
            entry["tag"] = tag
        entry["revisionName"] = revision_name
        if target.get("configurationName"):
            entry["configurationName"] = target["configurationName"]
        entry["latestRevision"] = bool(target.get("latestRevision"))
        entry["percent"] = int(target.get("percent") or 0)
        if tag:
            entry["url"] = _url(context, f"{tag}-{name}", namespace)
            effective.append(entry)
            continue
        key = (revision_name, entry["latestRevision"])
        if key in untagged:
            untagged[key]["percent"] += entry["percent"]
        else:
            untagged[key] = entry
            effective.append(entry)
    return effective


def reconcile_route(context: Context, namespace: str, name: str) -> None:
    """Resolve traffic targets; when all are ready, publish them to the gateway and status."""
    route = context.registry.find(ROUTES, namespace, name)
    if route is None:
        with context.lock:
            context.pushed_routes.pop((namespace, name), None)
        context.router.remove_routes(namespace, name)
        return
    if metadata_of(route).get("deletionTimestamp"):
        return
    previous = route.get("status") or {}
    resolved: list[tuple[Obj, str]] = []
    problems: list[_Problem] = []
    for target in (route.get("spec") or {}).get("traffic") or []:
        revision_name, problem = _resolve(context, namespace, target)
        if problem is not None:
            problems.append(problem)
        elif revision_name is not None:
            resolved.append((target, revision_name))
    status: Obj = {
        "observedGeneration": route["metadata"]["generation"],
        "url": _url(context, name, namespace),
        "address": {"url": f"http://{name}.{namespace}.svc.cluster.local"},
    }
    if problems:
        worst = next((p for p in problems if p.status == FALSE), problems[0])
        assigned = Condition("AllTrafficAssigned", worst.status, worst.reason, worst.message)
        if "traffic" in previous:
            status["traffic"] = previous["traffic"]  # keep serving the last good traffic
    else:
        assigned = Condition("AllTrafficAssigned", TRUE)
        status["traffic"] = _effective_traffic(context, route, resolved)
        _push_routes(context, namespace, name, status["traffic"])
    certificate = Condition(
        "CertificateProvisioned", TRUE, "TLSNotEnabled", "autoTLS is not enabled"
    )
    ingress = Condition("IngressReady", TRUE)
    ready = conditions.aggregate("Ready", [assigned, ingress, certificate])
    status["conditions"] = conditions.render(
        previous.get("conditions"), [assigned, certificate, ingress, ready]
    )
    _write_status(context, ROUTES, route, status)


def _push_routes(context: Context, namespace: str, name: str, traffic: list[Obj]) -> None:
    targets = [
        RouteTarget(t["revisionName"], int(t.get("percent") or 0), t.get("tag")) for t in traffic
    ]
    with context.lock:
        if context.pushed_routes.get((namespace, name)) == targets:
            return
        context.pushed_routes[(namespace, name)] = targets
    try:
        context.router.set_routes(namespace, name, targets)
    except Exception:
        with context.lock:
            context.pushed_routes.pop((namespace, name), None)
        raise


def api_error_is_retryable(error: ApiError) -> bool:
    """Conflicts and races with deletion are retried; validation errors are not."""
    return error.code in (404, 409)
