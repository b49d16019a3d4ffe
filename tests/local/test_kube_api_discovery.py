"""Discovery, OpenAPI and Table responses, through the kubernetes client and kubectl."""

from __future__ import annotations

from typing import Any

import pytest
from kube_helpers import GROUP, VERSION, CustomObjects, Kubectl, knative_service, raw_request
from kubernetes import client as k8s

from local.kube.cluster import LocalCluster

pytestmark = pytest.mark.timeout(60)


def _get(api_client: k8s.ApiClient, path: str, accept: str = "application/json") -> Any:
    status, body = raw_request(api_client, "GET", path, headers={"Accept": accept})
    assert status == 200, (path, status, body)
    return body


def test_version_reports_kubernetes_1_32(kube_client: k8s.ApiClient) -> None:
    version = k8s.VersionApi(kube_client).get_code()
    assert (version.major, version.minor) == ("1", "32")
    assert version.git_version.startswith("v1.32.")


def test_core_and_group_discovery(kube_client: k8s.ApiClient) -> None:
    assert _get(kube_client, "/api")["versions"] == ["v1"]
    groups = {g["name"]: g for g in _get(kube_client, "/apis")["groups"]}
    assert set(groups) == {
        "serving.knative.dev",
        "networking.istio.io",
        "security.istio.io",
        "rbac.authorization.k8s.io",
        "authorization.k8s.io",
    }
    assert groups["networking.istio.io"]["preferredVersion"]["version"] == "v1"
    assert {v["version"] for v in groups["security.istio.io"]["versions"]} == {"v1", "v1beta1"}
    group = _get(kube_client, "/apis/serving.knative.dev")
    assert group["kind"] == "APIGroup"
    assert group["preferredVersion"]["groupVersion"] == "serving.knative.dev/v1"


def test_knative_resource_list_has_short_names_categories_and_verbs(
    kube_client: k8s.ApiClient,
) -> None:
    listing = _get(kube_client, "/apis/serving.knative.dev/v1")
    assert listing["kind"] == "APIResourceList"
    resources = {r["name"]: r for r in listing["resources"]}
    services = resources["services"]
    assert services["kind"] == "Service"
    assert services["singularName"] == "service"
    assert services["namespaced"] is True
    assert set(services["shortNames"]) == {"ksvc", "kservice"}
    assert "knative" in services["categories"]
    assert {"get", "list", "watch", "create", "update", "patch", "delete"} <= set(services["verbs"])
    assert resources["revisions"]["shortNames"] == ["rev"]
    assert resources["services/status"]["verbs"] == ["get", "patch", "update"]
    namespaces = {r["name"]: r for r in _get(kube_client, "/api/v1")["resources"]}
    assert namespaces["namespaces"]["namespaced"] is False
    assert namespaces["namespaces"]["shortNames"] == ["ns"]


def test_openapi_v3_declares_field_validation_and_patch_types(kube_client: k8s.ApiClient) -> None:
    index = _get(kube_client, "/openapi/v3")["paths"]
    assert "apis/serving.knative.dev/v1" in index
    document = _get(kube_client, index["apis/serving.knative.dev/v1"]["serverRelativeURL"])
    item = document["paths"]["/apis/serving.knative.dev/v1/namespaces/{namespace}/services/{name}"]
    patch = item["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": GROUP,
        "version": VERSION,
        "kind": "Service",
    }
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    # A custom resource takes no strategic merge patch; kubectl falls back to merge patch.
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
    assert "dev.knative.serving.v1.Service" in document["components"]["schemas"]


def test_unknown_group_version_and_resource_are_404(kube_client: k8s.ApiClient) -> None:
    for path in (
        "/apis/example.com",
        "/apis/serving.knative.dev/v2",
        "/apis/serving.knative.dev/v1/namespaces/x/widgets",
        "/openapi/v3/apis/example.com/v1",
        "/api/v1/namespaces/x/pods",
    ):
        status, body = raw_request(kube_client, "GET", path)
        assert status == 404, path
        assert body["kind"] == "Status" and body["reason"] == "NotFound"


def test_table_response_has_knative_printer_columns(
    kube_client: k8s.ApiClient, custom_api: CustomObjects, namespace: str
) -> None:
    custom_api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "services", knative_service("tabled")
    )
    table = _get(
        kube_client,
        f"/apis/serving.knative.dev/v1/namespaces/{namespace}/services",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    assert table["kind"] == "Table"
    headers = [c["name"] for c in table["columnDefinitions"]]
    assert headers == ["Name", "URL", "LatestCreated", "LatestReady", "Ready", "Reason"]
    assert table["rows"][0]["cells"][0] == "tabled"
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


@pytest.mark.kubectl
def test_kubectl_api_resources_lists_knative_and_istio(kubectl: Kubectl) -> None:
    output = kubectl("api-resources", "--api-group=serving.knative.dev").stdout
    assert "ksvc" in output and "rev" in output
    output = kubectl("api-resources", "--api-group=security.istio.io").stdout
    assert "authorizationpolicies" in output and "requestauthentications" in output


@pytest.mark.kubectl
def test_kubectl_get_prints_columns(
    kubectl: Kubectl, custom_api: CustomObjects, namespace: str, eventually: Any
) -> None:
    custom_api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "services", knative_service("columns")
    )
    eventually(
        lambda: "True" in kubectl("get", "ksvc", "columns", "-n", namespace).stdout,
        what="the service to be Ready",
    )
    lines = kubectl("get", "ksvc", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "URL", "LATESTCREATED", "LATESTREADY", "READY", "REASON"]
    assert lines[1].split() == [
        "columns",
        f"http://columns.{namespace}.example.com",
        "columns-00001",
        "columns-00001",
        "True",
    ]
    revisions = kubectl("get", "revisions", "-n", namespace).stdout.splitlines()
    assert revisions[0].split()[:5] == ["NAME", "CONFIG", "NAME", "GENERATION", "READY"]
    assert revisions[1].split()[:4] == ["columns-00001", "columns", "1", "True"]


@pytest.mark.kubectl
def test_kubectl_explain_reads_openapi(kubectl: Kubectl, cluster: LocalCluster) -> None:
    output = kubectl("explain", "ksvc").stdout
    assert "KIND:" in output and "Service" in output
