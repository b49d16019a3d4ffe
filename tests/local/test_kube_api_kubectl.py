"""kubectl against the local API server: namespaces, apply, get, patch, wait, delete, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_helpers import Kubectl, knative_service

pytestmark = [pytest.mark.kubectl, pytest.mark.timeout(90)]


def _manifest(
    tmp_path: Path, namespace: str, body: dict[str, Any], name: str = "ksvc.yaml"
) -> Path:
    body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body))
    return path


def test_create_namespace_sends_protobuf_and_works(kubectl: Kubectl, namespace: str) -> None:
    assert (
        kubectl("create", "namespace", namespace).stdout.strip() == f"namespace/{namespace} created"
    )
    got = kubectl.json("get", "namespace", namespace)
    assert got["status"]["phase"] == "Active"
    again = kubectl("create", "namespace", namespace, check=False)
    assert again.returncode != 0 and "AlreadyExists" in again.stderr
    kubectl("label", "namespace", namespace, "team=models")
    assert kubectl.json("get", "namespace", namespace)["metadata"]["labels"] == {"team": "models"}
    assert kubectl("delete", "namespace", namespace).returncode == 0
    missing = kubectl("get", "namespace", namespace, check=False)
    assert "NotFound" in missing.stderr


def test_apply_creates_then_configures_a_knative_service(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    manifest = _manifest(tmp_path, namespace, knative_service("applied", "example.test/app:v1"))
    assert "created" in kubectl("apply", "-f", str(manifest)).stdout
    created = kubectl.json("get", "ksvc", "applied", "-n", namespace)
    assert created["metadata"]["generation"] == 1
    assert "kubectl.kubernetes.io/last-applied-configuration" in created["metadata"]["annotations"]

    manifest = _manifest(tmp_path, namespace, knative_service("applied", "example.test/app:v2"))
    assert "configured" in kubectl("apply", "-f", str(manifest)).stdout
    updated = kubectl.json("get", "ksvc", "applied", "-n", namespace)
    assert updated["metadata"]["generation"] == 2
    assert updated["spec"]["template"]["spec"]["containers"][0]["image"] == "example.test/app:v2"
    kubectl("wait", "--for=condition=Ready", "ksvc/applied", "-n", namespace, "--timeout=20s")
    revisions = kubectl("get", "revisions", "-n", namespace, "-o", "name").stdout.split()
    assert revisions == [
        "revision.serving.knative.dev/applied-00001",
        "revision.serving.knative.dev/applied-00002",
    ]


def test_get_yaml_shows_server_fields(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    kubectl("apply", "-f", str(_manifest(tmp_path, namespace, knative_service("shown"))))
    kubectl("wait", "--for=condition=Ready", "ksvc/shown", "-n", namespace, "--timeout=20s")
    document = yaml.safe_load(kubectl("get", "ksvc", "shown", "-n", namespace, "-o", "yaml").stdout)
    assert document["metadata"]["uid"] and document["metadata"]["resourceVersion"]
    assert document["status"]["url"] == f"http://shown.{namespace}.example.com"
    assert document["status"]["latestReadyRevisionName"] == "shown-00001"


def test_patch_types(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    kubectl("apply", "-f", str(_manifest(tmp_path, namespace, knative_service("patchy"))))
    strategic = kubectl(
        "patch",
        "ksvc",
        "patchy",
        "-n",
        namespace,
        "-p",
        '{"metadata":{"labels":{"a":"1"}}}',
        check=False,
    )
    assert strategic.returncode != 0
    assert "application/strategic-merge-patch+json is not supported" in strategic.stderr
    kubectl(
        "patch",
        "ksvc",
        "patchy",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"metadata":{"labels":{"a":"1"}}}',
    )
    kubectl(
        "patch",
        "ksvc",
        "patchy",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/b","value":"2"}]',
    )
    labels = kubectl.json("get", "ksvc", "patchy", "-n", namespace)["metadata"]["labels"]
    assert labels == {"a": "1", "b": "2"}


def test_label_annotate_replace_and_server_side_apply(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    manifest = _manifest(tmp_path, namespace, knative_service("tools"))
    kubectl("apply", "--server-side", "-f", str(manifest))
    kubectl("label", "ksvc", "tools", "-n", namespace, "tier=gold")
    kubectl("annotate", "ksvc", "tools", "-n", namespace, "note=hello")
    metadata = kubectl.json("get", "ksvc", "tools", "-n", namespace)["metadata"]
    assert metadata["labels"] == {"tier": "gold"}
    assert metadata["annotations"]["note"] == "hello"
    assert "replaced" in kubectl("replace", "-f", str(manifest)).stdout


def test_invalid_manifest_names_the_field(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    body = knative_service(
        "invalid",
        traffic=[{"latestRevision": True, "percent": 60}, {"latestRevision": True, "percent": 30}],
    )
    result = kubectl("apply", "-f", str(_manifest(tmp_path, namespace, body)), check=False)
    assert result.returncode != 0
    assert 'The Service "invalid" is invalid' in result.stderr
    assert (
        "spec.traffic" in result.stderr and "Traffic targets sum to 90, want 100" in result.stderr
    )


def test_raw_non_json_body_is_400(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = kubectl(
        "create",
        "--raw",
        f"/apis/serving.knative.dev/v1/namespaces/{namespace}/services",
        "-f",
        str(bad),
        check=False,
    )
    assert result.returncode != 0 and "BadRequest" in result.stderr


def test_delete_then_not_found(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, namespace, knative_service("gone"))
    kubectl("apply", "-f", str(manifest))
    assert "deleted" in kubectl("delete", "-f", str(manifest)).stdout
    missing = kubectl("get", "ksvc", "gone", "-n", namespace, check=False)
    assert missing.returncode != 0
    assert 'services.serving.knative.dev "gone" not found' in missing.stderr


def test_unknown_resource_type(kubectl: Kubectl) -> None:
    result = kubectl("get", "widgets", check=False)
    assert result.returncode != 0
    assert 'the server doesn\'t have a resource type "widgets"' in result.stderr
