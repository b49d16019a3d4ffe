"""Knative Services whose revisions run as real processes behind the real gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_helpers import (
    CustomObjects,
    Knative,
    Kubectl,
    condition,
    is_ready,
    knative_service,
    settled,
    wait_until,
)
from kubernetes import client as k8s
from runtime_fixtures import (
    CATALOG_PATH,
    IRIS,
    MARKER_ENV,
    REPO_ROOT,
    TEST_REPO,
    catalog_with_fixtures,
    is_reaped,
    marked_processes,
)

from local.kube.cluster import LocalCluster
from local.kube.runtime import ProcessRuntime

pytestmark = pytest.mark.timeout(90)

SETOSA = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


@pytest.fixture(scope="module")
def process_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster running revisions as processes from the example catalog plus test images."""
    catalog = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    catalog_with_fixtures(catalog)
    local = LocalCluster(catalog=catalog).start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def process_api(process_cluster: LocalCluster) -> Iterator[k8s.CustomObjectsApi]:
    """CustomObjectsApi for the process cluster."""
    configuration = k8s.Configuration()
    configuration.host = process_cluster.kube_server
    with k8s.ApiClient(configuration) as api_client:
        yield k8s.CustomObjectsApi(api_client)


@pytest.fixture
def live(process_api: CustomObjects, namespace: str) -> Knative:
    """Knative helpers on the process cluster, in a fresh namespace."""
    return Knative(process_api, namespace)


def _predict(gateway_url: str, host: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{gateway_url}/predict",
        data=json.dumps(body).encode(),
        headers={"Host": host, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def _settled(live: Knative, plural: str, name: str, timeout: float = 30) -> dict[str, Any]:
    return wait_until(
        lambda: (obj := live.get(plural, name)) and settled(obj) and obj,
        timeout,
        f"{plural}/{name} to settle",
    )


@pytest.mark.kubectl
def test_kubectl_apply_iris_becomes_ready_and_predicts_through_the_gateway(
    process_cluster: LocalCluster, namespace: str, tmp_path: Path, kubectl: Kubectl
) -> None:
    own_kubectl = Kubectl(kubectl.binary, process_cluster.kube_server, tmp_path)
    own_kubectl("create", "namespace", namespace)
    manifest = tmp_path / "iris.yaml"
    body = knative_service("iris", f"{IRIS}:v1")
    body["metadata"]["namespace"] = namespace
    manifest.write_text(yaml.safe_dump(body))
    assert "created" in own_kubectl("apply", "-f", str(manifest)).stdout
    own_kubectl(
        "wait", "--for=condition=Ready", "ksvc/iris", "-n", namespace, "--timeout=30s", timeout=40
    )
    assert process_cluster.gateway_url is not None
    status, answer = _predict(process_cluster.gateway_url, f"iris.{namespace}.example.com", SETOSA)
    assert status == 200
    assert answer["predictions"] == ["setosa"] and answer["model_version"] == "v1"


def test_crashing_image_fails_with_exit_code(live: Knative) -> None:
    live.create(knative_service("crashy", f"{IRIS}:v4"))
    revision = _settled(live, "revisions", "crashy-00001")
    healthy = condition(revision, "ContainerHealthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "ExitCode1")
    assert "cannot load model weights" in healthy["message"]
    service = _settled(live, "services", "crashy")
    assert condition(service, "Ready")["reason"] == "RevisionFailed"


def test_image_not_in_catalog_is_container_missing(live: Knative) -> None:
    live.create(knative_service("absent", f"{IRIS}:v999"))
    revision = _settled(live, "revisions", "absent-00001")
    assert condition(revision, "ContainerHealthy")["reason"] == "ContainerMissing"
    assert condition(_settled(live, "services", "absent"), "Ready")["reason"] == "RevisionFailed"


def test_never_ready_process_exceeds_the_progress_deadline(live: Knative) -> None:
    live.create(
        knative_service(
            "sleepy",
            f"{TEST_REPO}:sleeper",
            annotations={"serving.knative.dev/progress-deadline": "1s"},
        )
    )
    revision = _settled(live, "revisions", "sleepy-00001", timeout=15)
    available = condition(revision, "ResourcesAvailable")
    assert (available["status"], available["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert condition(_settled(live, "services", "sleepy"), "Ready")["reason"] == "RevisionFailed"


def test_deleting_the_service_stops_its_process(
    live: Knative, process_api: CustomObjects, process_cluster: LocalCluster
) -> None:
    live.create(knative_service("brief", f"{IRIS}:v2"))
    wait_until(lambda: is_ready(live.get("services", "brief")), 30, "brief to be Ready")
    runtime = process_cluster.runtime
    assert isinstance(runtime, ProcessRuntime)
    pid = runtime.pid(live.namespace, "brief-00001")
    assert pid is not None and not is_reaped(pid)
    process_api.delete_namespaced_custom_object(
        "serving.knative.dev", "v1", live.namespace, "services", "brief"
    )
    wait_until(lambda: is_reaped(pid), 15, f"revision process {pid} to stop")
    assert runtime.state(live.namespace, "brief-00001") is None


@pytest.mark.kubectl
def test_serve_command_announces_urls_and_stops_revisions_on_sigterm(
    tmp_path: Path, namespace: str, kubectl: Kubectl
) -> None:
    ready_file = tmp_path / "ready.json"
    command = [
        sys.executable,
        "-m",
        "local.kube",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--gateway-port",
        "0",
        "--domain",
        "example.com",
        "--catalog",
        str(CATALOG_PATH),
        "--ready-file",
        str(ready_file),
    ]
    server = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    marker = uuid.uuid4().hex
    try:
        announced = wait_until(
            lambda: ready_file.exists() and json.loads(ready_file.read_text()), 20, "the ready file"
        )
        assert set(announced) == {"kube_server", "gateway_url", "pid"}
        assert announced["pid"] == server.pid
        own_kubectl = Kubectl(kubectl.binary, announced["kube_server"], tmp_path)
        body = knative_service("iris", f"{IRIS}:v1", env={MARKER_ENV: marker})
        body["metadata"]["namespace"] = namespace
        own_kubectl("apply", "-f", "-", input=json.dumps(body))
        own_kubectl(
            "wait",
            "--for=condition=Ready",
            "ksvc/iris",
            "-n",
            namespace,
            "--timeout=30s",
            timeout=40,
        )
        status, answer = _predict(announced["gateway_url"], f"iris.{namespace}.example.com", SETOSA)
        assert status == 200 and answer["predictions"] == ["setosa"]
        assert marked_processes(marker), "the revision process should be running"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
        assert marked_processes(marker) == []
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        if server.stdout:
            server.stdout.close()
        if server.stderr:
            server.stderr.close()
