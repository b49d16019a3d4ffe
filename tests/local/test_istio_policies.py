"""hekaton's Istio policies through the local API server, followed by the gateway's mesh auth."""

from __future__ import annotations

import time
from collections.abc import Callable

from local.kube.cluster import LocalCluster
from local.kube.mesh_auth import pod_labels
from shared.auth_spec import AuthSpec
from shared.istio import IstioPolicies
from shared.knative import KnativeServing, api_client
from tests.local.kube_helpers import FakeRuntime
from tests.unit.test_mesh_auth import JWKS, _token

AUTH = AuthSpec.model_validate(
    {
        "issuers": [{"issuer": "hekaton-local", "jwks": JWKS}],
        "principals": ["hekaton-local/alice@*"],
    }
)


def _eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_apply_is_idempotent_enforced_by_the_gateway_and_removed_with_the_service() -> None:
    with LocalCluster(runtime=FakeRuntime()) as cluster:
        gateway = cluster._gateway
        api = api_client(cluster.kube_server)
        policies = IstioPolicies(api)

        def status(authorization: str | None) -> int | None:
            labels = pod_labels("iris", "iris-1")
            return gateway.auth.check("models", labels, "GET", "/", authorization).status

        policies.apply("models", "iris", AUTH)
        policies.apply("models", "iris", AUTH)  # unchanged: no error, no second object
        # The AuthorizationPolicy lands first (token-less calls refused at once), so wait until the
        # gateway has seen the RequestAuthentication too: until then a good token is refused.
        _eventually(lambda: status(None) == 403 and status(_token()) is None)
        assert status(_token(sub="mallory@x")) == 403
        open_auth = AUTH.model_copy(update={"principals": ["*"]})
        policies.apply("models", "iris", open_auth)  # replaced
        _eventually(lambda: status(_token(sub="mallory@x")) is None)
        KnativeServing(api).delete_service("models", "iris")  # removes hekaton's labelled policies
        _eventually(lambda: status(None) is None)
        policies.apply("models", "iris", AUTH)
        _eventually(lambda: status(None) == 403)
        policies.apply("models", "iris", None)
        _eventually(lambda: status(None) is None)
