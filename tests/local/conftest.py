"""Fixtures for the local cluster: an in-process LocalCluster, the kubernetes client, kubectl."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kube_helpers import (
    KUBECTL_MISSING,
    CustomObjects,
    FakeRouter,
    FakeRuntime,
    Knative,
    Kubectl,
    wait_until,
)
from kubernetes import client as k8s

from local.kube.cluster import LocalCluster


@pytest.fixture(scope="session")
def fake_runtime() -> FakeRuntime:
    """The runtime behind the session cluster."""
    return FakeRuntime()


@pytest.fixture(scope="session")
def fake_router() -> FakeRouter:
    """The router behind the session cluster."""
    return FakeRouter()


@pytest.fixture(scope="session")
def cluster(fake_runtime: FakeRuntime, fake_router: FakeRouter) -> Iterator[LocalCluster]:
    """One in-process cluster for the session (fake runtime and router); tests use own namespaces."""
    local = LocalCluster(runtime=fake_runtime, router=fake_router).start()
    yield local
    local.stop()


@pytest.fixture
def namespace() -> str:
    """A fresh namespace name, so tests sharing the cluster never see each other's objects."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def kube_client(cluster: LocalCluster) -> Iterator[k8s.ApiClient]:
    """The kubernetes Python client pointed at the cluster."""
    configuration = k8s.Configuration()
    configuration.host = cluster.kube_server
    api_client = k8s.ApiClient(configuration)
    yield api_client
    api_client.close()


@pytest.fixture(scope="session")
def custom_api(kube_client: k8s.ApiClient) -> k8s.CustomObjectsApi:
    """CustomObjectsApi for Knative and Istio objects."""
    return k8s.CustomObjectsApi(kube_client)


@pytest.fixture(scope="session")
def core_api(kube_client: k8s.ApiClient) -> k8s.CoreV1Api:
    """CoreV1Api for namespaces."""
    return k8s.CoreV1Api(kube_client)


def kubectl_binary() -> str:
    """The kubectl path, or skip the test with the package to install."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip(KUBECTL_MISSING)
    return binary


@pytest.fixture(scope="session")
def kubectl(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """kubectl pointed at the session cluster (skips when kubectl is not installed)."""
    return Kubectl(kubectl_binary(), cluster.kube_server, tmp_path_factory.mktemp("kubectl-cache"))


@pytest.fixture(scope="session")
def eventually() -> Callable[..., Any]:
    """``eventually(condition, timeout, what)``: the first truthy value of a polled condition."""
    return wait_until


@pytest.fixture
def knative(custom_api: CustomObjects, namespace: str) -> Knative:
    """Knative helpers bound to a fresh namespace."""
    return Knative(custom_api, namespace)
