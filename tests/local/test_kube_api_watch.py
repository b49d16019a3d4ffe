"""Watches: from a resourceVersion, initial state, timeouts, selectors, expiry; kubectl get -w."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kube_helpers import CustomObjects, FakeRouter, FakeRuntime, Kubectl
from kubernetes import client as k8s
from kubernetes import watch

from local.kube.cluster import LocalCluster

pytestmark = pytest.mark.timeout(60)

ISTIO = ("networking.istio.io", "v1")
PLURAL = "virtualservices"


def _vs(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": metadata,
        "spec": {"hosts": [f"{name}.example.com"]},
    }


def _collect(
    api: CustomObjects, namespace: str, count: int, **kwargs: Any
) -> list[tuple[str, str, dict[str, Any]]]:
    """The first ``count`` events of a watch (type, name, object); stops as soon as they arrived."""
    watcher = watch.Watch()
    events = []
    for event in watcher.stream(
        api.list_namespaced_custom_object, *ISTIO, namespace, PLURAL, timeout_seconds=10, **kwargs
    ):
        events.append((event["type"], event["object"]["metadata"]["name"], event["object"]))
        if len(events) == count:
            watcher.stop()
    return events


def test_watch_from_resource_version_sends_later_events_in_order(
    custom_api: CustomObjects, namespace: str
) -> None:
    custom_api.create_namespaced_custom_object(*ISTIO, namespace, PLURAL, _vs("before"))
    listed = custom_api.list_namespaced_custom_object(*ISTIO, namespace, PLURAL)
    start = listed["metadata"]["resourceVersion"]
    custom_api.create_namespaced_custom_object(*ISTIO, namespace, PLURAL, _vs("after"))
    custom_api.patch_namespaced_custom_object(
        *ISTIO, namespace, PLURAL, "before", {"spec": {"hosts": ["new.example.com"]}}
    )
    custom_api.delete_namespaced_custom_object(*ISTIO, namespace, PLURAL, "after")

    events = _collect(custom_api, namespace, 3, resource_version=start)
    assert [(kind, name) for kind, name, _ in events] == [
        ("ADDED", "after"),
        ("MODIFIED", "before"),
        ("DELETED", "after"),
    ]
    versions = [int(obj["metadata"]["resourceVersion"]) for _, _, obj in events]
    assert versions == sorted(versions) and versions[0] > int(start)
    assert events[1][2]["spec"]["hosts"] == ["new.example.com"]


def test_watch_without_resource_version_starts_with_current_objects(
    custom_api: CustomObjects, namespace: str
) -> None:
    for name in ("a", "b"):
        custom_api.create_namespaced_custom_object(*ISTIO, namespace, PLURAL, _vs(name))
    events = _collect(custom_api, namespace, 2)
    assert sorted((kind, name) for kind, name, _ in events) == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_delivers_changes_made_while_it_is_open(
    custom_api: CustomObjects, namespace: str
) -> None:
    custom_api.create_namespaced_custom_object(*ISTIO, namespace, PLURAL, _vs("seed"))
    watcher = watch.Watch()
    seen = []
    for event in watcher.stream(
        custom_api.list_namespaced_custom_object, *ISTIO, namespace, PLURAL, timeout_seconds=10
    ):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if len(seen) == 1:
            # The stream is open (its first event arrived): this change must come through it.
            custom_api.create_namespaced_custom_object(*ISTIO, namespace, PLURAL, _vs("live"))
        else:
            watcher.stop()
    assert seen == [("ADDED", "seed"), ("ADDED", "live")]


def test_timeout_seconds_ends_an_idle_watch(custom_api: CustomObjects, namespace: str) -> None:
    start = custom_api.list_namespaced_custom_object(*ISTIO, namespace, PLURAL)["metadata"][
        "resourceVersion"
    ]
    began = time.monotonic()
    events = list(
        watch.Watch().stream(
            custom_api.list_namespaced_custom_object,
            *ISTIO,
            namespace,
            PLURAL,
            resource_version=start,
            timeout_seconds=1,
        )
    )
    assert events == []
    assert 0.9 <= time.monotonic() - began < 5


def test_watch_with_label_selector_reports_objects_leaving_the_selection(
    custom_api: CustomObjects, namespace: str
) -> None:
    start = custom_api.list_namespaced_custom_object(*ISTIO, namespace, PLURAL)["metadata"][
        "resourceVersion"
    ]
    custom_api.create_namespaced_custom_object(
        *ISTIO, namespace, PLURAL, _vs("other", {"app": "db"})
    )
    custom_api.create_namespaced_custom_object(
        *ISTIO, namespace, PLURAL, _vs("mover", {"app": "web"})
    )
    custom_api.patch_namespaced_custom_object(
        *ISTIO, namespace, PLURAL, "mover", {"metadata": {"labels": {"app": "db"}}}
    )
    events = _collect(custom_api, namespace, 2, resource_version=start, label_selector="app=web")
    assert [(kind, name) for kind, name, _ in events] == [("ADDED", "mover"), ("DELETED", "mover")]


def test_watch_across_namespaces(custom_api: CustomObjects, namespace: str) -> None:
    start = custom_api.list_cluster_custom_object(*ISTIO, PLURAL)["metadata"]["resourceVersion"]
    custom_api.create_namespaced_custom_object(*ISTIO, namespace, PLURAL, _vs("x"))
    custom_api.create_namespaced_custom_object(*ISTIO, f"{namespace}-b", PLURAL, _vs("y"))
    watcher = watch.Watch()
    seen = []
    for event in watcher.stream(
        custom_api.list_cluster_custom_object,
        *ISTIO,
        PLURAL,
        resource_version=start,
        timeout_seconds=10,
    ):
        metadata = event["object"]["metadata"]
        if metadata["namespace"].startswith(namespace):
            seen.append((metadata["namespace"], metadata["name"]))
        if len(seen) == 2:
            watcher.stop()
    assert seen == [(namespace, "x"), (f"{namespace}-b", "y")]


@pytest.fixture
def small_history_cluster() -> Iterator[LocalCluster]:
    """A cluster keeping only a few events, to reach "too old resource version" quickly."""
    local = LocalCluster(runtime=FakeRuntime(), router=FakeRouter(), history_limit=5).start()
    yield local
    local.stop()


def test_watch_from_a_compacted_resource_version_is_410_expired(
    small_history_cluster: LocalCluster,
) -> None:
    configuration = k8s.Configuration()
    configuration.host = small_history_cluster.kube_server
    with k8s.ApiClient(configuration) as api_client:
        api: CustomObjects = k8s.CustomObjectsApi(api_client)
        first = api.create_namespaced_custom_object(*ISTIO, "default", PLURAL, _vs("v0"))
        for index in range(1, 15):
            api.create_namespaced_custom_object(*ISTIO, "default", PLURAL, _vs(f"v{index}"))
        with pytest.raises(k8s.ApiException) as raised:
            list(
                watch.Watch().stream(
                    api.list_namespaced_custom_object,
                    *ISTIO,
                    "default",
                    PLURAL,
                    resource_version=first["metadata"]["resourceVersion"],
                    timeout_seconds=5,
                )
            )
        assert raised.value.status == 410
        assert "Expired" in str(raised.value.reason)


@pytest.mark.kubectl
def test_kubectl_get_watch_streams_changes(
    kubectl: Kubectl, custom_api: CustomObjects, namespace: str
) -> None:
    custom_api.create_namespaced_custom_object(*ISTIO, namespace, PLURAL, _vs("first"))
    command = [
        kubectl.binary,
        f"--server={kubectl.server}",
        f"--cache-dir={kubectl.cache_dir}",
        "get",
        "virtualservices",
        "-n",
        namespace,
        "--watch",
        "--output-watch-events",
        "--request-timeout=20s",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kubectl.environment(),
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        lines.append(process.stdout.readline())  # header
        lines.append(process.stdout.readline())  # the existing object
        custom_api.create_namespaced_custom_object(*ISTIO, namespace, PLURAL, _vs("second"))
        lines.append(process.stdout.readline())
    finally:
        process.kill()
        process.wait(timeout=10)
    assert lines[0].split()[:3] == ["EVENT", "NAME", "GATEWAYS"]
    assert lines[1].split()[:2] == ["ADDED", "first"]
    assert lines[2].split()[:2] == ["ADDED", "second"]
