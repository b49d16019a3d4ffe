"""The kinds this API server serves: names, versions, scope, printer columns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

KNATIVE_GROUP = "serving.knative.dev"
ISTIO_NETWORKING_GROUP = "networking.istio.io"
ISTIO_SECURITY_GROUP = "security.istio.io"
RBAC_GROUP = "rbac.authorization.k8s.io"
AUTHORIZATION_GROUP = "authorization.k8s.io"


@dataclass(frozen=True)
class Column:
    """One printer column (``kubectl get``): a header and how to read the cell from an object."""

    name: str
    type: str  # OpenAPI type: string, integer, date, ...
    read: Callable[[Obj], Any]
    description: str = ""
    priority: int = 0  # 0 = always shown, 1 = only with -o wide


@dataclass(frozen=True)
class ResourceType:
    """A served resource (like a CRD): all versions share one storage; objects differ only in apiVersion."""

    group: str
    versions: tuple[str, ...]  # the first is the preferred version
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = True
    custom: bool = True  # a custom resource: no strategic merge patch
    columns: tuple[Column, ...] = field(default=())
    fields: tuple[str, ...] = (
        "spec",
        "status",
    )  # top-level fields besides apiVersion/kind/metadata
    # A review (e.g. SelfSubjectAccessReview): only created, answered at once, never stored.
    review: bool = False

    @property
    def key(self) -> str:
        """Storage key, e.g. ``services.serving.knative.dev``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        """Kind of the list response, e.g. ``ServiceList``."""
        return f"{self.kind}List"

    def api_version(self, version: str) -> str:
        """``group/version`` (or ``v1`` for the core group)."""
        return f"{self.group}/{version}" if self.group else version


def _condition(obj: Obj, kind: str, attribute: str) -> Any:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == kind:
            return condition.get(attribute)
    return None


def _status(attribute: str) -> Callable[[Obj], Any]:
    return lambda obj: (obj.get("status") or {}).get(attribute)


def _label(name: str) -> Callable[[Obj], Any]:
    return lambda obj: ((obj.get("metadata") or {}).get("labels") or {}).get(name)


def _spec(attribute: str) -> Callable[[Obj], Any]:
    return lambda obj: (obj.get("spec") or {}).get(attribute)


def _age(obj: Obj) -> Any:
    return (obj.get("metadata") or {}).get("creationTimestamp")


_READY = Column("Ready", "string", lambda o: _condition(o, "Ready", "status"))
_REASON = Column("Reason", "string", lambda o: _condition(o, "Ready", "reason"))
_URL = Column("URL", "string", _status("url"))
_LATEST_CREATED = Column("LatestCreated", "string", _status("latestCreatedRevisionName"))
_LATEST_READY = Column("LatestReady", "string", _status("latestReadyRevisionName"))
AGE = Column("Age", "date", _age)

_KNATIVE_CATEGORIES = ("all", "knative", "serving")


def _review(kind: str) -> ResourceType:
    """An access review kind (authorization.k8s.io): created to ask, answered, never stored."""
    return ResourceType(
        group=AUTHORIZATION_GROUP,
        versions=("v1",),
        plural=f"{kind.lower()}s",
        singular=kind.lower(),
        kind=kind,
        namespaced=False,
        status_subresource=False,
        custom=False,
        review=True,
    )


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType(
        group="",
        versions=("v1",),
        plural="namespaces",
        singular="namespace",
        kind="Namespace",
        namespaced=False,
        short_names=("ns",),
        custom=False,
        columns=(
            Column("Status", "string", lambda o: (o.get("status") or {}).get("phase")),
            AGE,
        ),
    ),
    ResourceType(
        group=KNATIVE_GROUP,
        versions=("v1",),
        plural="services",
        singular="service",
        kind="Service",
        short_names=("kservice", "ksvc"),
        categories=_KNATIVE_CATEGORIES,
        columns=(_URL, _LATEST_CREATED, _LATEST_READY, _READY, _REASON),
    ),
    ResourceType(
        group=KNATIVE_GROUP,
        versions=("v1",),
        plural="configurations",
        singular="configuration",
        kind="Configuration",
        short_names=("config", "cfg"),
        categories=_KNATIVE_CATEGORIES,
        columns=(_LATEST_CREATED, _LATEST_READY, _READY, _REASON),
    ),
    ResourceType(
        group=KNATIVE_GROUP,
        versions=("v1",),
        plural="revisions",
        singular="revision",
        kind="Revision",
        short_names=("rev",),
        categories=_KNATIVE_CATEGORIES,
        columns=(
            Column("Config Name", "string", _label("serving.knative.dev/configuration")),
            Column("Generation", "string", _label("serving.knative.dev/configurationGeneration")),
            _READY,
            _REASON,
            Column("Actual Replicas", "integer", _status("actualReplicas")),
            Column("Desired Replicas", "integer", _status("desiredReplicas")),
        ),
    ),
    ResourceType(
        group=KNATIVE_GROUP,
        versions=("v1",),
        plural="routes",
        singular="route",
        kind="Route",
        short_names=("rt",),
        categories=_KNATIVE_CATEGORIES,
        columns=(_URL, _READY, _REASON),
    ),
    ResourceType(
        group=ISTIO_NETWORKING_GROUP,
        versions=("v1", "v1beta1", "v1alpha3"),
        plural="virtualservices",
        singular="virtualservice",
        kind="VirtualService",
        short_names=("vs",),
        categories=("istio-io", "networking-istio-io"),
        columns=(
            Column("Gateways", "string", _spec("gateways")),
            Column("Hosts", "string", _spec("hosts")),
            AGE,
        ),
    ),
    ResourceType(
        group=ISTIO_SECURITY_GROUP,
        versions=("v1", "v1beta1"),
        plural="authorizationpolicies",
        singular="authorizationpolicy",
        kind="AuthorizationPolicy",
        short_names=("ap",),
        categories=("istio-io", "security-istio-io"),
        columns=(Column("Action", "string", _spec("action")), AGE),
    ),
    ResourceType(
        group=ISTIO_SECURITY_GROUP,
        versions=("v1", "v1beta1"),
        plural="requestauthentications",
        singular="requestauthentication",
        kind="RequestAuthentication",
        short_names=("ra",),
        categories=("istio-io", "security-istio-io"),
        columns=(AGE,),
    ),
    ResourceType(
        group=RBAC_GROUP,
        versions=("v1",),
        plural="roles",
        singular="role",
        kind="Role",
        status_subresource=False,
        custom=False,
        fields=("rules",),
        columns=(Column("Created At", "date", _age),),
    ),
    ResourceType(
        group=RBAC_GROUP,
        versions=("v1",),
        plural="rolebindings",
        singular="rolebinding",
        kind="RoleBinding",
        status_subresource=False,
        custom=False,
        fields=("roleRef", "subjects"),
        columns=(
            Column("Role", "string", lambda o: "{kind}/{name}".format(**(o.get("roleRef") or {}))),
            AGE,
        ),
    ),
    _review("SelfSubjectAccessReview"),
    _review("SubjectAccessReview"),
)

NAMESPACES = RESOURCE_TYPES[0]


def find(group: str, version: str, plural: str) -> ResourceType | None:
    """The resource served at ``group/version/plural``, or None."""
    for resource in RESOURCE_TYPES:
        if resource.group == group and resource.plural == plural and version in resource.versions:
            return resource
    return None


def require(group: str, version: str, plural: str) -> ResourceType:
    """The resource served at ``group/version/plural`` (raises KeyError if unknown)."""
    found = find(group, version, plural)
    if found is None:
        raise KeyError(f"{plural}.{group}/{version}")
    return found


def by_key(key: str) -> ResourceType:
    """The resource with this storage key (raises KeyError if unknown)."""
    for resource in RESOURCE_TYPES:
        if resource.key == key:
            return resource
    raise KeyError(key)


def groups() -> dict[str, list[str]]:
    """Every non-core group with its versions, preferred first."""
    result: dict[str, list[str]] = {}
    for resource in RESOURCE_TYPES:
        if not resource.group:
            continue
        versions = result.setdefault(resource.group, [])
        for version in resource.versions:
            if version not in versions:
                versions.append(version)
    return result


def in_group_version(group: str, version: str) -> list[ResourceType]:
    """All resources served under ``group/version``."""
    return [r for r in RESOURCE_TYPES if r.group == group and version in r.versions]
