"""KnativeServing.delete_service on the local cluster: the Service, its revisions and hekaton's
Istio policies go; other policies stay; deleting twice is fine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kube_helpers import Knative, knative_service
from kubernetes import client as k8s

from shared.knative import KnativeServing

pytestmark = pytest.mark.timeout(60)


def _policy(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "labels": labels},
        "spec": {"action": "ALLOW"},
    }


def test_delete_service_removes_it_its_revisions_and_our_policies(
    kube_client: k8s.ApiClient,
    custom_api: k8s.CustomObjectsApi,
    knative: Knative,
    namespace: str,
    eventually: Callable[..., Any],
) -> None:
    knative.create(knative_service("gone"))
    eventually(lambda: knative.get("revisions", "gone-00001"), what="revision gone-00001")
    for name, labels in (("ours", {"hekaton.dev/service": "gone"}), ("theirs", {"team": "x"})):
        custom_api.create_namespaced_custom_object(
            "security.istio.io", "v1", namespace, "authorizationpolicies", _policy(name, labels)
        )
    serving = KnativeServing(kube_client)

    assert serving.delete_service(namespace, "gone") is True

    assert serving.get_service(namespace, "gone") is None
    eventually(lambda: knative.get("revisions", "gone-00001") is None, what="revision collected")
    left = custom_api.list_namespaced_custom_object(
        "security.istio.io", "v1", namespace, "authorizationpolicies"
    )
    assert [p["metadata"]["name"] for p in left["items"]] == ["theirs"]
    assert serving.delete_service(namespace, "gone") is False  # idempotent
