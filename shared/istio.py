"""PoliciesProvider on Istio's security API (`security.istio.io/v1`) through the Kubernetes API."""

from __future__ import annotations

import contextlib
from typing import Any

from kubernetes import client as k8s

from shared.auth_spec import AuthSpec
from shared.knative import ISTIO_SECURITY, ISTIO_VERSION, Missing, kube_call
from shared.policies import policy_name, policy_objects

_PLURALS = {
    "RequestAuthentication": "requestauthentications",
    "AuthorizationPolicy": "authorizationpolicies",
}


class IstioPolicies:
    """Creates, replaces and deletes a service's RequestAuthentication and AuthorizationPolicy."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self._objects = k8s.CustomObjectsApi(api)

    def apply(self, namespace: str, service: str, auth: AuthSpec | None) -> None:
        """Make the service's policies match `auth` (None: remove them); idempotent."""
        if auth is None:
            for plural in _PLURALS.values():
                self._delete(namespace, plural, policy_name(service))
            return
        # The AuthorizationPolicy first: from then on token-less requests are refused.
        for body in reversed(policy_objects(namespace, service, auth)):
            self._put(namespace, _PLURALS[body["kind"]], body)

    def _put(self, namespace: str, plural: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        try:
            current = kube_call(
                f"read {plural} {namespace}/{name}",
                lambda: self._objects.get_namespaced_custom_object(
                    ISTIO_SECURITY, ISTIO_VERSION, namespace, plural, name
                ),
                missing_ok=True,
            )
        except Missing:
            kube_call(
                f"create {plural} {namespace}/{name}",
                lambda: self._objects.create_namespaced_custom_object(
                    ISTIO_SECURITY, ISTIO_VERSION, namespace, plural, body
                ),
                allow_conflict=True,
            )
            return
        if (
            current.get("spec") == body["spec"]
            and (current["metadata"].get("labels") or {}) == (body["metadata"]["labels"])
        ):
            return  # already as wanted
        replacement = {
            **body,
            "metadata": {
                **body["metadata"],
                "resourceVersion": current["metadata"].get("resourceVersion"),
            },
        }
        kube_call(
            f"replace {plural} {namespace}/{name}",
            lambda: self._objects.replace_namespaced_custom_object(
                ISTIO_SECURITY, ISTIO_VERSION, namespace, plural, name, replacement
            ),
        )

    def _delete(self, namespace: str, plural: str, name: str) -> None:
        with contextlib.suppress(Missing):
            kube_call(
                f"delete {plural} {namespace}/{name}",
                lambda: self._objects.delete_namespaced_custom_object(
                    ISTIO_SECURITY, ISTIO_VERSION, namespace, plural, name
                ),
                missing_ok=True,
            )
