"""List filtering and paging: label selectors, field selectors, limit/continue."""

from __future__ import annotations

from typing import Any

import pytest
from kube_helpers import CustomObjects, Kubectl, error_body
from kubernetes import client as k8s

pytestmark = pytest.mark.timeout(60)

ISTIO = ("security.istio.io", "v1")
PLURAL = "authorizationpolicies"

LABELS = {
    "web-front": {"app": "web", "tier": "front"},
    "web-back": {"app": "web", "tier": "back"},
    "db": {"app": "db"},
    "bare": {},
}


@pytest.fixture
def labelled(custom_api: CustomObjects, namespace: str) -> str:
    """Four policies with different labels in a fresh namespace."""
    for name, labels in LABELS.items():
        metadata: dict[str, Any] = {"name": name}
        if labels:
            metadata["labels"] = labels
        custom_api.create_namespaced_custom_object(
            *ISTIO,
            namespace,
            PLURAL,
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": metadata,
            },
        )
    return namespace


def _names(api: CustomObjects, namespace: str, **query: Any) -> list[str]:
    listed = api.list_namespaced_custom_object(*ISTIO, namespace, PLURAL, **query)
    return [item["metadata"]["name"] for item in listed["items"]]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["web-back", "web-front"]),
        ("app==web", ["web-back", "web-front"]),
        ("app!=web", ["bare", "db"]),
        ("app in (web, db)", ["db", "web-back", "web-front"]),
        ("app notin (web)", ["bare", "db"]),
        ("tier", ["web-back", "web-front"]),
        ("!tier", ["bare", "db"]),
        ("app=web,tier=front", ["web-front"]),
        ("app=nothing", []),
    ],
)
def test_label_selectors(
    custom_api: CustomObjects, labelled: str, selector: str, expected: list[str]
) -> None:
    assert _names(custom_api, labelled, label_selector=selector) == expected


def test_field_selector_on_metadata_name(custom_api: CustomObjects, labelled: str) -> None:
    assert _names(custom_api, labelled, field_selector="metadata.name=db") == ["db"]
    assert _names(custom_api, labelled, field_selector="metadata.name!=db") == [
        "bare",
        "web-back",
        "web-front",
    ]
    assert _names(custom_api, labelled, field_selector=f"metadata.namespace={labelled}") == [
        "bare",
        "db",
        "web-back",
        "web-front",
    ]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"label_selector": "app in web"}, "unable to parse requirement"),
        ({"label_selector": "bad key!=x"}, "unable to parse requirement"),
        ({"field_selector": "spec.action=ALLOW"}, "not a known field selector"),
    ],
)
def test_bad_selectors_are_400(
    custom_api: CustomObjects, labelled: str, query: dict[str, str], fragment: str
) -> None:
    with pytest.raises(k8s.ApiException) as raised:
        custom_api.list_namespaced_custom_object(*ISTIO, labelled, PLURAL, **query)
    assert raised.value.status == 400
    assert fragment in error_body(raised.value)["message"]


def test_limit_and_continue_page_through_a_list(custom_api: CustomObjects, labelled: str) -> None:
    first = custom_api.list_namespaced_custom_object(*ISTIO, labelled, PLURAL, limit=3)
    assert [i["metadata"]["name"] for i in first["items"]] == ["bare", "db", "web-back"]
    assert first["metadata"]["remainingItemCount"] == 1
    second = custom_api.list_namespaced_custom_object(
        *ISTIO, labelled, PLURAL, limit=3, _continue=first["metadata"]["continue"]
    )
    assert [i["metadata"]["name"] for i in second["items"]] == ["web-front"]
    assert "continue" not in second["metadata"]


def test_list_reports_the_current_resource_version(
    custom_api: CustomObjects, labelled: str
) -> None:
    listed = custom_api.list_namespaced_custom_object(*ISTIO, labelled, PLURAL)
    newest = max(int(i["metadata"]["resourceVersion"]) for i in listed["items"])
    assert listed["kind"] == "AuthorizationPolicyList"
    assert int(listed["metadata"]["resourceVersion"]) >= newest


@pytest.mark.kubectl
def test_kubectl_label_selector(kubectl: Kubectl, labelled: str) -> None:
    output = kubectl("get", "authorizationpolicies", "-n", labelled, "-l", "app=web", "-o", "name")
    assert output.stdout.split() == [
        "authorizationpolicy.security.istio.io/web-back",
        "authorizationpolicy.security.istio.io/web-front",
    ]
