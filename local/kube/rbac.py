"""Who is asking and may they: bearer-token identities checked against RBAC Roles and RoleBindings.

A request without credentials is the local developer, allowed everything (as the admin kubeconfig of
a real cluster). A request with `Authorization: Bearer T` is the user the server's token table names
for T (unknown tokens: 401), allowed only what a RoleBinding in the namespace grants through its Role
(everything else: 403, as the real API server answers). Discovery, OpenAPI and health paths are open
to every authenticated user, as `system:discovery` grants them. An unauthenticated caller may
impersonate (`Impersonate-User`, what `kubectl --as` sends); a bearer identity may not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from local.kube import errors, resources
from local.kube.errors import ApiError
from local.kube.registry import Registry

Obj = dict[str, Any]

ADMIN = None  # the unauthenticated local developer

_ROLES = resources.require(resources.RBAC_GROUP, "v1", "roles")
_BINDINGS = resources.require(resources.RBAC_GROUP, "v1", "rolebindings")


@dataclass(frozen=True)
class Attributes:
    """What a request does: the RBAC verb and the resource it addresses."""

    verb: str
    group: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    def describe(self) -> str:
        """As the real API server words a refusal."""
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = (
            f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        )
        return f'cannot {self.verb} resource "{what}" in API group "{self.group}"{where}'


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes | None:
    """The attributes of a resource request (None: a non-resource path such as /version).

    Parsed from the URL alone, so kinds this server does not serve (secrets, deployments) are
    refused for what they are rather than reported missing.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        rest = ["namespaces", rest[1]]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if verb is None and method == "DELETE":
        verb = "delete" if name else "deletecollection"
    if verb is None:  # GET, HEAD
        watching = query.get("watch", "").lower() in ("true", "1")
        verb = "watch" if watching else ("get" if name else "list")
    return Attributes(verb, group, resource, namespace, name, subresource)


def _matches(rule: Obj, attributes: Attributes) -> bool:
    resource = attributes.resource
    if attributes.subresource:
        resource = f"{resource}/{attributes.subresource}"
    names = rule.get("resourceNames") or []
    return (
        any(g in ("*", attributes.group) for g in rule.get("apiGroups") or [])
        and any(r in ("*", resource) for r in rule.get("resources") or [])
        and any(v in ("*", attributes.verb) for v in rule.get("verbs") or [])
        and (not names or attributes.name in names)
    )


class Authorizer:
    """Identifies callers by bearer token and decides requests with the stored RBAC objects."""

    def __init__(self, registry: Registry, tokens: Mapping[str, str] | None = None) -> None:
        self._registry = registry
        self._tokens = dict(tokens or {})

    def identify(self, authorization: str, impersonated: str | None) -> str | None:
        """The user of the `Authorization` header (ADMIN without one), or the one it impersonates
        (`Impersonate-User`); a 401/403 ApiError for a bad token or a forbidden impersonation."""
        if not authorization:
            return impersonated or ADMIN
        scheme, _, token = authorization.partition(" ")
        user = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if impersonated:
            raise ApiError(
                403,
                "Forbidden",
                f'users "{impersonated}" is forbidden: User "{user}" cannot impersonate resource '
                '"users" in API group "" at the cluster scope',
            )
        return user

    def allowed(self, user: str | None, attributes: Attributes) -> bool:
        """Whether a RoleBinding in the namespace grants `user` this request."""
        if user is ADMIN:
            return True
        if not attributes.namespace:
            return False  # no ClusterRoleBindings here: nothing is granted cluster-wide
        bindings = self._registry.list_objects(_BINDINGS, attributes.namespace).items
        for binding in bindings:
            subjects = binding.get("subjects") or []
            if not any(s.get("kind") == "User" and s.get("name") == user for s in subjects):
                continue
            ref = binding.get("roleRef") or {}
            if ref.get("kind") != "Role":
                continue
            role = self._registry.find(_ROLES, attributes.namespace, str(ref.get("name")))
            if role and any(_matches(rule, attributes) for rule in role.get("rules") or []):
                return True
        return False

    def authorize(self, user: str | None, attributes: Attributes) -> None:
        """Raise the real server's 403 unless `user` may make this request."""
        if attributes.resource == "selfsubjectaccessreviews":
            return  # every authenticated user may ask what it may do
        if not self.allowed(user, attributes):
            target = (
                f'{attributes.resource} "{attributes.name}"'
                if attributes.name
                else (attributes.resource)
            )
            raise ApiError(
                403,
                "Forbidden",
                f'{target} is forbidden: User "{user}" {attributes.describe()}',
                {"group": attributes.group, "kind": attributes.resource, "name": attributes.name},
            )

    def review(self, user: str | None, kind: str, body: Obj) -> Obj:
        """Answer a SelfSubjectAccessReview (for `user`) or SubjectAccessReview (for its spec.user)."""
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise errors.bad_request(f"{kind}: spec is required")
        spec = body["spec"]
        asked = spec.get("resourceAttributes")
        if not isinstance(asked, dict):
            raise errors.bad_request(f"{kind}: spec.resourceAttributes is required")
        subject = user if kind == "SelfSubjectAccessReview" else spec.get("user")
        if kind == "SubjectAccessReview" and not subject:
            raise errors.bad_request("SubjectAccessReview: spec.user is required")
        attributes = Attributes(
            verb=str(asked.get("verb", "")),
            group=str(asked.get("group", "")),
            resource=str(asked.get("resource", "")),
            namespace=str(asked.get("namespace", "")),
            name=str(asked.get("name", "")),
            subresource=str(asked.get("subresource", "")),
        )
        allowed = self.allowed(subject, attributes)
        # As the real RBAC authorizer: a reason for what is granted, none for a denial.
        reason = "granted by a RoleBinding" if allowed else ""
        if subject is ADMIN:
            reason = "the local developer (no credentials) may do everything"
        return {
            "apiVersion": f"{resources.AUTHORIZATION_GROUP}/v1",
            "kind": kind,
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": {"allowed": allowed, "reason": reason},
        }
