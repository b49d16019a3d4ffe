"""/healthz with its real probes: 200 when the Firestore emulator and the local Kubernetes API answer."""

from __future__ import annotations

from local.kube.cluster import LocalCluster
from shared.api import read
from shared.api.http import ApiRequest
from shared.api.serve import public_paths, serve
from shared.deps import Deps
from shared.health import FirestoreProbe, KubeProbe
from shared.settings import Settings
from tests.conftest import LOCAL_CALL_TIMEOUT


def test_healthz_is_200_when_firestore_and_kubernetes_answer(
    firestore_env: str, cluster: LocalCluster
) -> None:
    probes = (
        FirestoreProbe("hekaton-health", timeout_seconds=LOCAL_CALL_TIMEOUT),
        KubeProbe(cluster.kube_server, None, timeout_seconds=LOCAL_CALL_TIMEOUT),
    )
    deps = Deps(Settings(project="hekaton-health"), probes=probes)
    response = serve(deps, ApiRequest("GET", "/healthz"), read.routes, public_paths("read"))
    assert response.status == 200, response.body
    assert response.body["up"] == ["firestore", "kubernetes"]
    assert response.body["down"] == {}
