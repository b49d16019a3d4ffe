"""Create/read/update/patch/delete semantics through the kubernetes Python client."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kube_helpers import GROUP, VERSION, CustomObjects, error_body, knative_service, raw_request
from kubernetes import client as k8s

pytestmark = pytest.mark.timeout(60)

ISTIO_NETWORKING = ("networking.istio.io", "v1")
ISTIO_SECURITY = ("security.istio.io", "v1")


def _status(error: pytest.ExceptionInfo[k8s.ApiException]) -> dict[str, Any]:
    body = error_body(error.value)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == error.value.status
    return dict(body)


def _create(api: CustomObjects, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(api.create_namespaced_custom_object(GROUP, VERSION, namespace, "services", body))


def _get(api: CustomObjects, namespace: str, name: str) -> dict[str, Any]:
    return dict(api.get_namespaced_custom_object(GROUP, VERSION, namespace, "services", name))


def test_create_returns_201_with_server_metadata(custom_api: CustomObjects, namespace: str) -> None:
    _, code, _ = custom_api.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, namespace, "services", knative_service("fresh")
    )
    assert code == 201
    created = _get(custom_api, namespace, "fresh")
    metadata = created["metadata"]
    assert metadata["namespace"] == namespace
    assert metadata["generation"] == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", metadata["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", metadata["creationTimestamp"])
    assert metadata["resourceVersion"].isdigit()
    assert created["apiVersion"] == "serving.knative.dev/v1" and created["kind"] == "Service"


def test_resource_versions_grow_across_objects(custom_api: CustomObjects, namespace: str) -> None:
    first = _create(custom_api, namespace, knative_service("one"))
    second = _create(custom_api, namespace, knative_service("two"))
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


def test_create_existing_name_is_409_already_exists(
    custom_api: CustomObjects, namespace: str
) -> None:
    _create(custom_api, namespace, knative_service("taken"))
    with pytest.raises(k8s.ApiException) as raised:
        _create(custom_api, namespace, knative_service("taken"))
    assert raised.value.status == 409
    status = _status(raised)
    assert status["reason"] == "AlreadyExists"
    assert status["details"] == {"name": "taken", "group": GROUP, "kind": "services"}
    assert status["message"] == 'services.serving.knative.dev "taken" already exists'


def test_get_missing_object_is_404_not_found(custom_api: CustomObjects, namespace: str) -> None:
    with pytest.raises(k8s.ApiException) as raised:
        _get(custom_api, namespace, "ghost")
    assert raised.value.status == 404
    status = _status(raised)
    assert status["reason"] == "NotFound"
    assert status["message"] == 'services.serving.knative.dev "ghost" not found'


def test_unknown_resource_is_404(custom_api: CustomObjects, namespace: str) -> None:
    with pytest.raises(k8s.ApiException) as raised:
        custom_api.list_namespaced_custom_object(GROUP, VERSION, namespace, "widgets")
    assert raised.value.status == 404
    assert _status(raised)["reason"] == "NotFound"


def _virtual_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": [f"{name}.example.com"]},
    }


def test_replace_with_stale_resource_version_is_409_conflict(
    custom_api: CustomObjects, namespace: str
) -> None:
    api = custom_api
    created = api.create_namespaced_custom_object(
        *ISTIO_NETWORKING, namespace, "virtualservices", _virtual_service("raced")
    )
    first = dict(created, metadata={**created["metadata"], "labels": {"winner": "first"}})
    api.replace_namespaced_custom_object(
        *ISTIO_NETWORKING, namespace, "virtualservices", "raced", first
    )
    second = dict(created, metadata={**created["metadata"], "labels": {"winner": "second"}})
    with pytest.raises(k8s.ApiException) as raised:
        api.replace_namespaced_custom_object(
            *ISTIO_NETWORKING, namespace, "virtualservices", "raced", second
        )
    assert raised.value.status == 409
    status = _status(raised)
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on virtualservices.networking.istio.io "raced": the object '
        "has been modified; please apply your changes to the latest version and try again"
    )
    stored = api.get_namespaced_custom_object(
        *ISTIO_NETWORKING, namespace, "virtualservices", "raced"
    )
    assert stored["metadata"]["labels"] == {"winner": "first"}


def test_replace_without_resource_version_is_422(custom_api: CustomObjects, namespace: str) -> None:
    custom_api.create_namespaced_custom_object(
        *ISTIO_NETWORKING, namespace, "virtualservices", _virtual_service("unversioned")
    )
    with pytest.raises(k8s.ApiException) as raised:
        custom_api.replace_namespaced_custom_object(
            *ISTIO_NETWORKING,
            namespace,
            "virtualservices",
            "unversioned",
            _virtual_service("unversioned"),
        )
    assert raised.value.status == 422
    assert _status(raised)["details"]["causes"][0]["field"] == "metadata.resourceVersion"


def test_replace_returns_200_and_keeps_server_fields(
    custom_api: CustomObjects, namespace: str
) -> None:
    created = custom_api.create_namespaced_custom_object(
        *ISTIO_NETWORKING, namespace, "virtualservices", _virtual_service("kept")
    )
    body = {**created, "metadata": {**created["metadata"], "uid": "forged", "generation": 7}}
    body["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z"
    body["spec"] = {"hosts": ["changed.example.com"]}
    after, code, _ = custom_api.replace_namespaced_custom_object_with_http_info(
        *ISTIO_NETWORKING, namespace, "virtualservices", "kept", body
    )
    assert code == 200
    assert after["metadata"]["uid"] == created["metadata"]["uid"]
    assert after["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert after["metadata"]["generation"] == 2
    assert int(after["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_generation_bumps_on_spec_changes_only(custom_api: CustomObjects, namespace: str) -> None:
    _create(custom_api, namespace, knative_service("gen"))
    patch = custom_api.patch_namespaced_custom_object

    labelled = patch(
        GROUP, VERSION, namespace, "services", "gen", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    status = custom_api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "services", "gen", {"status": {"observedGeneration": 99}}
    )
    assert status["metadata"]["generation"] == 1
    changed = patch(
        GROUP,
        VERSION,
        namespace,
        "services",
        "gen",
        {"spec": {"template": {"spec": {"containers": [{"image": "example.test/app:v2"}]}}}},
    )
    assert changed["metadata"]["generation"] == 2
    unchanged = patch(
        GROUP,
        VERSION,
        namespace,
        "services",
        "gen",
        {"spec": {"template": {"spec": {"containers": [{"image": "example.test/app:v2"}]}}}},
    )
    assert unchanged["metadata"]["generation"] == 2


def test_a_patch_that_changes_nothing_stores_nothing(
    custom_api: CustomObjects, namespace: str
) -> None:
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "same"},
        "spec": {"hosts": ["a.example.com"]},
    }
    created = custom_api.create_namespaced_custom_object(
        *ISTIO_NETWORKING, namespace, "virtualservices", body
    )
    again = custom_api.patch_namespaced_custom_object(
        *ISTIO_NETWORKING,
        namespace,
        "virtualservices",
        "same",
        {"spec": {"hosts": ["a.example.com"]}},
    )
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_status_subresource_only_changes_status(custom_api: CustomObjects, namespace: str) -> None:
    istio = ISTIO_NETWORKING
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "vs", "labels": {"v": "1"}},
        "spec": {"hosts": ["a.example.com"]},
        "status": {"ignored": "on create"},
    }
    created = custom_api.create_namespaced_custom_object(*istio, namespace, "virtualservices", body)
    assert "status" not in created  # the status subresource drops status on create

    created["spec"]["hosts"] = ["b.example.com"]
    created["status"] = {"phase": "main resource cannot set this"}
    updated = custom_api.replace_namespaced_custom_object(
        *istio, namespace, "virtualservices", "vs", created
    )
    assert updated["spec"]["hosts"] == ["b.example.com"]
    assert "status" not in updated

    updated["spec"]["hosts"] = ["status-put-cannot-set.example.com"]
    updated["metadata"]["labels"] = {"v": "status-put-cannot-set"}
    updated["status"] = {"phase": "Programmed"}
    with_status = custom_api.replace_namespaced_custom_object_status(
        *istio, namespace, "virtualservices", "vs", updated
    )
    assert with_status["status"] == {"phase": "Programmed"}
    assert with_status["spec"]["hosts"] == ["b.example.com"]
    assert with_status["metadata"]["labels"] == {"v": "1"}
    assert with_status["metadata"]["generation"] == 2


def test_merge_patch_and_json_patch_by_content_type(
    custom_api: CustomObjects, namespace: str
) -> None:
    _create(custom_api, namespace, knative_service("patched", labels={"keep": "yes", "drop": "x"}))
    merged = custom_api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "services",
        "patched",
        {"metadata": {"labels": {"drop": None, "added": "1"}}},
        _content_type="application/merge-patch+json",
    )
    assert merged["metadata"]["labels"] == {"keep": "yes", "added": "1"}
    jsoned = custom_api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "services",
        "patched",
        [
            {"op": "test", "path": "/metadata/labels/keep", "value": "yes"},
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/image",
                "value": "x.test/b:2",
            },
            {"op": "add", "path": "/metadata/labels/via~1json", "value": "patch"},
        ],
        _content_type="application/json-patch+json",
    )
    assert jsoned["spec"]["template"]["spec"]["containers"][0]["image"] == "x.test/b:2"
    assert jsoned["metadata"]["labels"]["via/json"] == "patch"


def test_failed_json_patch_test_is_422_and_changes_nothing(
    custom_api: CustomObjects, namespace: str
) -> None:
    _create(custom_api, namespace, knative_service("tested"))
    with pytest.raises(k8s.ApiException) as raised:
        custom_api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "services",
            "tested",
            [
                {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
                {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "nope"},
            ],
            _content_type="application/json-patch+json",
        )
    assert raised.value.status == 422
    after = _get(custom_api, namespace, "tested")
    assert "labels" not in after["metadata"]  # the first operation was not applied either


def test_strategic_merge_patch_on_custom_resource_is_415(
    custom_api: CustomObjects, namespace: str
) -> None:
    _create(custom_api, namespace, knative_service("strategic"))
    with pytest.raises(k8s.ApiException) as raised:
        custom_api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "services",
            "strategic",
            {"metadata": {"labels": {"a": "b"}}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert raised.value.status == 415
    status = _status(raised)
    assert status["reason"] == "UnsupportedMediaType"
    assert "application/merge-patch+json" in status["message"]


def test_patch_pinning_a_stale_resource_version_is_409(
    custom_api: CustomObjects, namespace: str
) -> None:
    created = _create(custom_api, namespace, knative_service("pinned"))
    custom_api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "services", "pinned", {"metadata": {"labels": {"a": "1"}}}
    )
    with pytest.raises(k8s.ApiException) as raised:
        custom_api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "services",
            "pinned",
            {
                "metadata": {
                    "resourceVersion": created["metadata"]["resourceVersion"],
                    "labels": {"a": "2"},
                }
            },
        )
    assert raised.value.status == 409


def test_delete_returns_the_object_then_404(custom_api: CustomObjects, namespace: str) -> None:
    _create(custom_api, namespace, knative_service("doomed"))
    deleted, code, _ = custom_api.delete_namespaced_custom_object_with_http_info(
        GROUP, VERSION, namespace, "services", "doomed"
    )
    assert code == 200
    assert deleted["metadata"]["name"] == "doomed"
    with pytest.raises(k8s.ApiException) as raised:
        _get(custom_api, namespace, "doomed")
    assert raised.value.status == 404
    with pytest.raises(k8s.ApiException) as again:
        custom_api.delete_namespaced_custom_object(GROUP, VERSION, namespace, "services", "doomed")
    assert again.value.status == 404


def test_delete_with_failed_precondition_is_409(custom_api: CustomObjects, namespace: str) -> None:
    _create(custom_api, namespace, knative_service("guarded"))
    with pytest.raises(k8s.ApiException) as raised:
        custom_api.delete_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "services",
            "guarded",
            body=k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid="not-the-uid")),
        )
    assert raised.value.status == 409
    assert _get(custom_api, namespace, "guarded")["metadata"]["name"] == "guarded"


def test_finalizers_hold_deletion_until_removed(custom_api: CustomObjects, namespace: str) -> None:
    body = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        "spec": {"action": "ALLOW"},
    }
    custom_api.create_namespaced_custom_object(
        *ISTIO_SECURITY, namespace, "authorizationpolicies", body
    )
    marked = custom_api.delete_namespaced_custom_object(
        *ISTIO_SECURITY, namespace, "authorizationpolicies", "held"
    )
    assert marked["metadata"]["deletionTimestamp"]
    custom_api.patch_namespaced_custom_object(
        *ISTIO_SECURITY,
        namespace,
        "authorizationpolicies",
        "held",
        {"metadata": {"finalizers": None}},
    )
    with pytest.raises(k8s.ApiException) as raised:
        custom_api.get_namespaced_custom_object(
            *ISTIO_SECURITY, namespace, "authorizationpolicies", "held"
        )
    assert raised.value.status == 404


def test_invalid_names_are_422_with_field_causes(custom_api: CustomObjects, namespace: str) -> None:
    for bad in ("Upper", "1starts-with-digit", "has_underscore", "x" * 64):
        with pytest.raises(k8s.ApiException) as raised:
            _create(custom_api, namespace, knative_service(bad))
        assert raised.value.status == 422, bad
        status = _status(raised)
        assert status["reason"] == "Invalid"
        assert status["details"]["kind"] == "Service"
        assert status["details"]["causes"][0]["field"] == "metadata.name"
        assert status["details"]["causes"][0]["reason"] == "FieldValueInvalid"


def test_missing_name_is_required_and_generate_name_works(
    custom_api: CustomObjects, namespace: str
) -> None:
    body = knative_service("placeholder")
    del body["metadata"]["name"]
    with pytest.raises(k8s.ApiException) as raised:
        _create(custom_api, namespace, body)
    assert raised.value.status == 422
    assert _status(raised)["details"]["causes"][0]["reason"] == "FieldValueRequired"
    body["metadata"]["generateName"] = "gen-"
    created = _create(custom_api, namespace, body)
    assert re.fullmatch(r"gen-[a-z0-9]{5}", created["metadata"]["name"])


def test_api_version_or_kind_not_matching_the_url_is_400(
    custom_api: CustomObjects, namespace: str
) -> None:
    wrong_version = knative_service("mismatch")
    wrong_version["apiVersion"] = "serving.knative.dev/v2"
    wrong_kind = knative_service("mismatch")
    wrong_kind["kind"] = "Route"
    no_kind = knative_service("mismatch")
    del no_kind["kind"]
    for body, expected in (
        (wrong_version, "API version"),
        (wrong_kind, "kind"),
        (no_kind, "'Kind' is missing"),
    ):
        with pytest.raises(k8s.ApiException) as raised:
            _create(custom_api, namespace, body)
        assert raised.value.status == 400
        status = _status(raised)
        assert status["reason"] == "BadRequest" and expected in status["message"]


def test_body_namespace_must_match_the_url(custom_api: CustomObjects, namespace: str) -> None:
    body = knative_service("elsewhere")
    body["metadata"]["namespace"] = "other"
    with pytest.raises(k8s.ApiException) as raised:
        _create(custom_api, namespace, body)
    assert raised.value.status == 400


def test_non_json_body_is_400(kube_client: k8s.ApiClient, namespace: str) -> None:
    status, body = raw_request(
        kube_client,
        "POST",
        f"/apis/serving.knative.dev/v1/namespaces/{namespace}/services",
        body=b"{not json",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 415  # neither JSON nor YAML
    status, body = raw_request(
        kube_client,
        "POST",
        f"/apis/serving.knative.dev/v1/namespaces/{namespace}/services",
        body=b"{not json",
        headers={"Content-Type": "application/yaml"},
    )
    assert status == 400 and body["reason"] == "BadRequest"


def test_body_over_3_mib_is_413(custom_api: CustomObjects, namespace: str) -> None:
    body = knative_service("huge")
    body["metadata"]["annotations"] = {"blob": "x" * (3 * 1024 * 1024 + 1)}
    with pytest.raises(k8s.ApiException) as raised:
        _create(custom_api, namespace, body)
    assert raised.value.status == 413
    assert _status(raised)["reason"] == "RequestEntityTooLarge"
    # The connection pool still works after the refused upload.
    _create(custom_api, namespace, knative_service("after-huge"))


def test_dry_run_validates_without_storing(custom_api: CustomObjects, namespace: str) -> None:
    created = custom_api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "services", knative_service("dry"), dry_run="All"
    )
    assert created["metadata"]["name"] == "dry"
    with pytest.raises(k8s.ApiException) as raised:
        _get(custom_api, namespace, "dry")
    assert raised.value.status == 404


def test_unknown_fields_strict_is_400_and_default_prunes(
    custom_api: CustomObjects, namespace: str
) -> None:
    body = knative_service("unknown")
    body["sepc"] = {"typo": True}
    with pytest.raises(k8s.ApiException) as raised:
        custom_api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "services", body, field_validation="Strict"
        )
    assert raised.value.status == 400
    assert 'unknown field "sepc"' in _status(raised)["message"]
    created = _create(custom_api, namespace, body)
    assert "sepc" not in created


@pytest.mark.parametrize(
    ("group", "version", "plural", "kind"),
    [
        ("networking.istio.io", "v1", "virtualservices", "VirtualService"),
        ("networking.istio.io", "v1beta1", "virtualservices", "VirtualService"),
        ("security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy"),
        ("security.istio.io", "v1beta1", "requestauthentications", "RequestAuthentication"),
    ],
)
def test_istio_kinds_crud(
    custom_api: CustomObjects,
    namespace: str,
    group: str,
    version: str,
    plural: str,
    kind: str,
) -> None:
    body = {
        "apiVersion": f"{group}/{version}",
        "kind": kind,
        "metadata": {"name": "policy.one"},
        "spec": {"anything": {"goes": [1, 2]}},
    }
    created = custom_api.create_namespaced_custom_object(group, version, namespace, plural, body)
    assert created["spec"] == {"anything": {"goes": [1, 2]}}
    other_version = "v1beta1" if version == "v1" else "v1"
    same = custom_api.get_namespaced_custom_object(
        group, other_version, namespace, plural, "policy.one"
    )
    assert same["apiVersion"] == f"{group}/{other_version}"  # one storage, served in every version
    listed = custom_api.list_namespaced_custom_object(group, version, namespace, plural)
    assert listed["kind"] == f"{kind}List"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["policy.one"]
    custom_api.delete_namespaced_custom_object(group, version, namespace, plural, "policy.one")
    assert (
        custom_api.list_namespaced_custom_object(group, version, namespace, plural)["items"] == []
    )


def test_namespaces_create_get_list_delete(core_api: k8s.CoreV1Api, namespace: str) -> None:
    created = core_api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    assert created.status is not None and created.status.phase == "Active"
    read = core_api.read_namespace(namespace)
    assert read.metadata is not None and created.metadata is not None
    assert read.metadata.uid == created.metadata.uid
    assert namespace in [n.metadata.name for n in core_api.list_namespace().items if n.metadata]
    with pytest.raises(k8s.ApiException) as raised:
        core_api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    assert raised.value.status == 409
    with pytest.raises(k8s.ApiException) as invalid:
        core_api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="Not_Valid")))
    assert invalid.value.status == 422
    core_api.delete_namespace(namespace)
    with pytest.raises(k8s.ApiException) as gone:
        core_api.read_namespace(namespace)
    assert gone.value.status == 404


def test_first_object_creates_its_namespace(
    custom_api: CustomObjects, core_api: k8s.CoreV1Api, namespace: str
) -> None:
    _create(custom_api, namespace, knative_service("first"))
    status = core_api.read_namespace(namespace).status
    assert status is not None and status.phase == "Active"


def test_deleting_a_namespace_deletes_its_objects(
    custom_api: CustomObjects, core_api: k8s.CoreV1Api, namespace: str
) -> None:
    _create(custom_api, namespace, knative_service("inside"))
    core_api.delete_namespace(namespace)
    listed = custom_api.list_namespaced_custom_object(GROUP, VERSION, namespace, "services")
    assert listed["items"] == []


def test_delete_collection_by_label(custom_api: CustomObjects, namespace: str) -> None:
    for name, app in (("a", "web"), ("b", "web"), ("c", "db")):
        body = _virtual_service(name)
        body["metadata"]["labels"] = {"app": app}
        custom_api.create_namespaced_custom_object(
            *ISTIO_NETWORKING, namespace, "virtualservices", body
        )
    deleted = custom_api.delete_collection_namespaced_custom_object(
        *ISTIO_NETWORKING, namespace, "virtualservices", label_selector="app=web"
    )
    assert sorted(item["metadata"]["name"] for item in deleted["items"]) == ["a", "b"]
    left = custom_api.list_namespaced_custom_object(*ISTIO_NETWORKING, namespace, "virtualservices")
    assert [item["metadata"]["name"] for item in left["items"]] == ["c"]


def test_unpinned_patches_survive_concurrent_writers(
    custom_api: CustomObjects, namespace: str
) -> None:
    """A patch without a resourceVersion is re-applied on a racing write, as the real server does."""
    import threading

    _create(custom_api, namespace, knative_service("busy"))
    stop = threading.Event()
    failures: list[Exception] = []

    def patch_metadata(metadata: dict[str, dict[str, str]]) -> None:
        custom_api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "services", "busy", {"metadata": metadata}
        )

    def keep_writing() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            try:
                patch_metadata({"annotations": {"w": str(count)}})
            except Exception as error:  # a writer's failure is the test's, not a lost warning
                failures.append(error)
                return

    writers = [threading.Thread(target=keep_writing) for _ in range(3)]
    for writer in writers:
        writer.start()
    try:
        for i in range(150):
            patch_metadata({"labels": {"n": str(i)}})
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=10)
    assert failures == []
    final = custom_api.get_namespaced_custom_object(GROUP, VERSION, namespace, "services", "busy")
    assert final["metadata"]["labels"]["n"] == "149"


def test_unpinned_patch_right_after_create_races_the_controller(
    custom_api: CustomObjects, namespace: str
) -> None:
    """The controller writes status just after a create; an unpinned patch then must not get 409."""
    for i in range(40):
        _create(custom_api, namespace, knative_service(f"fresh-{i}"))
        patched = custom_api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "services",
            f"fresh-{i}",
            {"metadata": {"labels": {"a": "1"}}},
        )
        assert patched["metadata"]["labels"]["a"] == "1"
