"""KnativeServing.set_traffic(if_version=…) on the local cluster: a write conditional on the
Service's resourceVersion lands only if nothing wrote since it was read (the route repair's rule)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kube_helpers import Knative, knative_service
from kubernetes import client as k8s

from shared.errors import RetryableError
from shared.knative import KnativeServing
from shared.serving import TrafficTarget, same_routes

pytestmark = pytest.mark.timeout(60)


def test_a_conditional_traffic_write_loses_to_a_write_it_did_not_see(
    kube_client: k8s.ApiClient,
    knative: Knative,
    namespace: str,
    eventually: Callable[..., Any],
) -> None:
    knative.create(knative_service("cond"))
    eventually(lambda: knative.get("revisions", "cond-00001"), what="revision cond-00001")
    serving = KnativeServing(kube_client)
    read = serving.get_service(namespace, "cond")
    assert read is not None and read.resource_version
    tagged = [TrafficTarget("cond-00001", 100, "stable")]
    serving.set_traffic(namespace, "cond", tagged)  # someone writes after our read

    with pytest.raises(RetryableError, match="409"):
        serving.set_traffic(
            namespace, "cond", [TrafficTarget("cond-00001", 100)], if_version=read.resource_version
        )
    fresh = serving.get_service(namespace, "cond")
    assert fresh is not None and same_routes(fresh.spec_traffic, tagged)

    # From a fresh read it lands. The controller's status writes move the resourceVersion too
    # (as in Kubernetes), so under load one may fall between a read and the write: that write
    # is refused as well, and the next fresh read lands (what the route repair's next tick does).
    for _ in range(10):
        fresh = serving.get_service(namespace, "cond")
        assert fresh is not None and same_routes(fresh.spec_traffic, tagged)
        try:
            serving.set_traffic(
                namespace,
                "cond",
                [TrafficTarget("cond-00001", 100)],
                if_version=fresh.resource_version,
            )
            break
        except RetryableError as exc:
            assert "409" in str(exc)
    else:
        pytest.fail("a conditional write from a fresh read never landed in 10 tries")
    after = serving.get_service(namespace, "cond")
    assert after is not None and same_routes(after.spec_traffic, [TrafficTarget("cond-00001", 100)])
