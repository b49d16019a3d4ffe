"""The policies boundary: a service's endpoint auth as Istio security objects, behind a Protocol.

`policy_objects` builds them (pure): a `RequestAuthentication` with one JWT rule per issuer and an
`AuthorizationPolicy` that ALLOWs only requests whose principal (`iss/sub`) matches the spec and
that carry its required claims; both select the Knative Service's pods and carry hekaton's label,
so deleting the service finds them (`ServingProvider.delete_service`).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from shared.auth_spec import AuthSpec
from shared.serving import MANAGED_FOR_LABEL

API_VERSION = "security.istio.io/v1"
POD_SERVICE_LABEL = "serving.knative.dev/service"  # Knative sets it on every revision's pods


def policy_name(service: str) -> str:
    """The name both objects share."""
    return f"hekaton-{service}-auth"


def policy_objects(namespace: str, service: str, auth: AuthSpec) -> list[dict[str, Any]]:
    """The RequestAuthentication and AuthorizationPolicy for `auth`, in that order."""
    metadata = {
        "name": policy_name(service),
        "namespace": namespace,
        "labels": {MANAGED_FOR_LABEL: service},
    }
    selector = {"matchLabels": {POD_SERVICE_LABEL: service}}
    rules = []
    for issuer in auth.issuers:
        rule: dict[str, Any] = {"issuer": issuer.issuer}
        if issuer.jwks_uri is not None:
            rule["jwksUri"] = issuer.jwks_uri
        else:
            rule["jwks"] = json.dumps(issuer.jwks, separators=(",", ":"), sort_keys=True)
        if issuer.audiences:
            rule["audiences"] = list(issuer.audiences)
        if issuer.forward_token:
            rule["forwardOriginalToken"] = True
        rules.append(rule)
    allow: dict[str, Any] = {"from": [{"source": {"requestPrincipals": list(auth.principals)}}]}
    if auth.claims:
        allow["when"] = [
            {"key": f"request.auth.claims[{name}]", "values": list(values)}
            for name, values in sorted(auth.claims.items())
        ]
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "RequestAuthentication",
            "metadata": metadata,
            "spec": {"selector": selector, "jwtRules": rules},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "AuthorizationPolicy",
            "metadata": metadata,
            "spec": {"selector": selector, "action": "ALLOW", "rules": [allow]},
        },
    ]


class PoliciesProvider(Protocol):
    """Applies a service's endpoint auth (Istio security policies in production)."""

    def apply(self, namespace: str, service: str, auth: AuthSpec | None) -> None:
        """Make the service's policies match `auth` (None: remove hekaton's); idempotent."""
        ...


class NoPolicies:
    """A cluster without Istio: a spec with `auth:` cannot be enforced, so it is refused."""

    def apply(self, namespace: str, service: str, auth: AuthSpec | None) -> None:
        """Refuse `auth`; nothing to remove."""
        if auth is not None:
            from shared.errors import PermanentError

            raise PermanentError(
                f"{namespace}/{service} has an auth section, but this installation applies no "
                "Istio policies (HEKATON_POLICIES_PROVIDER=none)"
            )


class FakePolicies:
    """In-memory policies for unit tests: the objects last applied per service."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, str, bool]] = []

    def apply(self, namespace: str, service: str, auth: AuthSpec | None) -> None:
        """Record the objects (or their removal)."""
        self.calls.append((namespace, service, auth is not None))
        if auth is None:
            self.objects.pop((namespace, service), None)
        else:
            self.objects[(namespace, service)] = policy_objects(namespace, service, auth)
