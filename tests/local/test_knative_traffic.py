"""Knative traffic: validation, status.traffic with tag URLs, RevisionMissing, the gateway's
routes, and cascading deletion."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kube_helpers import (
    CustomObjects,
    FakeRouter,
    FakeRuntime,
    Knative,
    condition,
    error_body,
    is_ready,
    knative_service,
    settled,
)
from kubernetes import client as k8s

from local.kube.contracts import RouteTarget

pytestmark = pytest.mark.timeout(60)

Eventually = Callable[..., Any]


def _causes(error: pytest.ExceptionInfo[k8s.ApiException]) -> list[tuple[str, str]]:
    body = error_body(error.value)
    assert body["reason"] == "Invalid" and body["code"] == 422
    return [(c["field"], c["reason"]) for c in body["details"]["causes"]]


@pytest.mark.parametrize(
    ("traffic", "cause"),
    [
        (
            [{"latestRevision": True, "percent": 60}, {"revisionName": "t-x", "percent": 30}],
            ("spec.traffic", "FieldValueInvalid"),
        ),
        (
            [{"latestRevision": True, "percent": 110}],
            ("spec.traffic[0].percent", "FieldValueInvalid"),
        ),
        (
            [{"latestRevision": True, "percent": -5}],
            ("spec.traffic[0].percent", "FieldValueInvalid"),
        ),
        (
            [{"revisionName": "t-x", "latestRevision": True, "percent": 100}],
            ("spec.traffic[0].latestRevision", "FieldValueInvalid"),
        ),
        (
            [{"latestRevision": False, "percent": 100}],
            ("spec.traffic[0].latestRevision", "FieldValueInvalid"),
        ),
        (
            [
                {"latestRevision": True, "percent": 100, "tag": "same"},
                {"revisionName": "t-x", "percent": 0, "tag": "same"},
            ],
            ("spec.traffic[1].tag", "FieldValueDuplicate"),
        ),
        (
            [{"latestRevision": True, "percent": 100, "tag": "Not_A_Label"}],
            ("spec.traffic[0].tag", "FieldValueInvalid"),
        ),
        (
            [{"configurationName": "t", "percent": 100}],
            ("spec.traffic[0].configurationName", "FieldValueForbidden"),
        ),
    ],
)
def test_invalid_traffic_is_422_naming_the_field(
    knative: Knative, traffic: list[dict[str, Any]], cause: tuple[str, str]
) -> None:
    with pytest.raises(k8s.ApiException) as raised:
        knative.create(knative_service("t", traffic=traffic))
    assert cause in _causes(raised)


def test_sum_message_is_knatives(knative: Knative) -> None:
    with pytest.raises(k8s.ApiException) as raised:
        knative.create(knative_service("t", traffic=[{"latestRevision": True, "percent": 90}]))
    message = error_body(raised.value)["message"]
    assert message == (
        'Service.serving.knative.dev "t" is invalid: spec.traffic: Invalid value: 90: '
        "Traffic targets sum to 90, want 100"
    )


def test_default_traffic_is_all_to_the_latest_revision(
    knative: Knative, fake_router: FakeRouter, eventually: Eventually
) -> None:
    created = knative.create(knative_service("default"))
    assert created["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    service = eventually(
        lambda: (s := knative.get("services", "default")) and is_ready(s) and s, what="ready"
    )
    assert service["status"]["traffic"] == [
        {"revisionName": "default-00001", "latestRevision": True, "percent": 100}
    ]
    assert fake_router.current(knative.namespace, "default") == [
        RouteTarget("default-00001", 100, None)
    ]


def _two_revisions(knative: Knative, name: str, eventually: Eventually) -> None:
    knative.create(knative_service(name, "example.test/app:v1"))
    eventually(lambda: is_ready(knative.get("services", name)), what=f"{name} ready")
    knative.patch(
        name, {"spec": {"template": {"spec": {"containers": [{"image": "example.test/app:v2"}]}}}}
    )
    eventually(
        lambda: (
            (s := knative.get("services", name))
            and is_ready(s)
            and s["status"]["latestReadyRevisionName"] == f"{name}-00002"
        ),
        what=f"{name}-00002 ready",
    )


def test_split_with_tags_resolves_names_and_tag_urls(
    knative: Knative, fake_router: FakeRouter, eventually: Eventually
) -> None:
    _two_revisions(knative, "split", eventually)
    knative.patch(
        "split",
        {
            "spec": {
                "traffic": [
                    {"revisionName": "split-00001", "percent": 90, "tag": "stable"},
                    {"revisionName": "split-00002", "percent": 10, "tag": "candidate"},
                    {"latestRevision": True, "percent": 0, "tag": "latest"},
                ]
            }
        },
    )
    service = eventually(
        lambda: (
            (s := knative.get("services", "split"))
            and is_ready(s)
            and len(s["status"]["traffic"]) == 3
            and s
        ),
        what="the split to be applied",
    )
    namespace = knative.namespace
    assert service["status"]["traffic"] == [
        {
            "tag": "stable",
            "revisionName": "split-00001",
            "latestRevision": False,
            "percent": 90,
            "url": f"http://stable-split.{namespace}.example.com",
        },
        {
            "tag": "candidate",
            "revisionName": "split-00002",
            "latestRevision": False,
            "percent": 10,
            "url": f"http://candidate-split.{namespace}.example.com",
        },
        {
            "tag": "latest",
            "revisionName": "split-00002",
            "latestRevision": True,
            "percent": 0,
            "url": f"http://latest-split.{namespace}.example.com",
        },
    ]
    assert fake_router.current(namespace, "split") == [
        RouteTarget("split-00001", 90, "stable"),
        RouteTarget("split-00002", 10, "candidate"),
        RouteTarget("split-00002", 0, "latest"),
    ]


def test_unknown_revision_in_traffic_is_revision_missing(
    knative: Knative, fake_router: FakeRouter, eventually: Eventually
) -> None:
    knative.create(knative_service("lost"))
    eventually(lambda: is_ready(knative.get("services", "lost")), what="lost ready")
    knative.patch("lost", {"spec": {"traffic": [{"revisionName": "lost-99999", "percent": 100}]}})
    service = eventually(
        lambda: (
            (s := knative.get("services", "lost"))
            and settled(s)
            and s["metadata"]["generation"] == 2
            and s
        ),
        what="the bad traffic to be reported",
    )
    routes_ready = condition(service, "RoutesReady")
    assert (routes_ready["status"], routes_ready["reason"]) == ("False", "RevisionMissing")
    assert routes_ready["message"] == 'Revision "lost-99999" referenced in traffic not found.'
    assert condition(service, "Ready")["reason"] == "RevisionMissing"
    route = knative.get("routes", "lost")
    assert condition(route, "AllTrafficAssigned")["status"] == "False"
    # Traffic stays where it was: on the last good configuration.
    assert service["status"]["traffic"][0]["revisionName"] == "lost-00001"
    assert fake_router.current(knative.namespace, "lost") == [RouteTarget("lost-00001", 100, None)]


def test_failed_revision_pinned_in_traffic_fails_routes(
    knative: Knative, eventually: Eventually
) -> None:
    knative.create(knative_service("pin", "example.test/app:v1"))
    eventually(lambda: is_ready(knative.get("services", "pin")), what="pin ready")
    knative.patch(
        "pin",
        {
            "spec": {
                "template": {
                    "metadata": {"name": "pin-bad"},
                    "spec": {"containers": [{"image": "example.test/crash:v2"}]},
                },
                "traffic": [
                    {"revisionName": "pin-00001", "percent": 50},
                    {"revisionName": "pin-bad", "percent": 50},
                ],
            }
        },
    )
    service = eventually(
        lambda: (
            (s := knative.get("services", "pin"))
            and settled(s)
            and condition(s, "RoutesReady").get("status") == "False"
            # Before the Configuration creates pin-bad the Route says it is "not found"; wait
            # for the failure itself.
            and condition(s, "RoutesReady").get("message")
            == 'Revision "pin-bad" failed to become ready.'
            and s
        ),
        what="the failed pinned revision to show",
    )
    assert condition(service, "Ready")["status"] == "False"


def test_deleting_a_service_cascades_to_children_processes_and_routes(
    knative: Knative,
    custom_api: CustomObjects,
    fake_runtime: FakeRuntime,
    fake_router: FakeRouter,
    eventually: Eventually,
) -> None:
    _two_revisions(knative, "cascade", eventually)
    namespace = knative.namespace
    assert fake_runtime.running(namespace) == {"cascade-00001", "cascade-00002"}
    custom_api.delete_namespaced_custom_object(
        "serving.knative.dev", "v1", namespace, "services", "cascade"
    )
    eventually(
        lambda: (
            not knative.revisions()
            and knative.get("configurations", "cascade") is None
            and knative.get("routes", "cascade") is None
        ),
        what="the children to be deleted",
    )
    eventually(lambda: not fake_runtime.running(namespace), what="the processes to stop")
    assert {(namespace, "cascade-00001"), (namespace, "cascade-00002")} <= set(fake_runtime.stopped)
    eventually(
        lambda: (namespace, "cascade") in fake_router.removed, what="the routes to be removed"
    )
    assert fake_router.current(namespace, "cascade") is None


def test_orphan_deletion_keeps_the_children(
    knative: Knative, custom_api: CustomObjects, eventually: Eventually
) -> None:
    knative.create(knative_service("orphan"))
    eventually(lambda: is_ready(knative.get("services", "orphan")), what="orphan ready")
    custom_api.delete_namespaced_custom_object(
        "serving.knative.dev",
        "v1",
        knative.namespace,
        "services",
        "orphan",
        propagation_policy="Orphan",
    )
    # The garbage collector handles deletions in order: once a later cascade is done, it has
    # seen the orphaning delete too.
    knative.create(knative_service("later"))
    eventually(lambda: knative.get("configurations", "later"), what="later's configuration")
    custom_api.delete_namespaced_custom_object(
        "serving.knative.dev", "v1", knative.namespace, "services", "later"
    )
    eventually(
        lambda: (
            knative.get("configurations", "later") is None
            and "later-00001" not in knative.revisions()
        ),
        what="later's cascade",
    )
    configuration = knative.get("configurations", "orphan")
    assert configuration is not None and "ownerReferences" not in configuration["metadata"]
    assert knative.get("routes", "orphan") is not None
    assert knative.revisions() == ["orphan-00001"]


def test_deleting_the_namespace_stops_its_revisions(
    knative: Knative,
    core_api: k8s.CoreV1Api,
    fake_runtime: FakeRuntime,
    fake_router: FakeRouter,
    eventually: Eventually,
) -> None:
    knative.create(knative_service("tenant"))
    eventually(lambda: is_ready(knative.get("services", "tenant")), what="tenant ready")
    core_api.delete_namespace(knative.namespace)
    eventually(lambda: not fake_runtime.running(knative.namespace), what="the processes to stop")
    eventually(
        lambda: fake_router.current(knative.namespace, "tenant") is None, what="the routes to go"
    )
    assert knative.revisions() == []
