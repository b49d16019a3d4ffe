"""Scaling and resources from the spec are on the Knative Service, as `kubectl get ksvc -o yaml` shows."""

from __future__ import annotations

import pytest

from tests.e2e.specs import E2E_NAMESPACE, e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack
from tests.unit.test_scaling_spec import GPU_SPEC

pytestmark = [pytest.mark.slow, pytest.mark.emulators, pytest.mark.kubectl]

SERVICE = "iris-scale"
REPOSITORY = e2e_repository("scale")


def test_the_ksvc_carries_the_specs_scaling_and_resources(e2e_stack: E2EStack) -> None:
    stack = e2e_stack
    stack.register(
        e2e_spec(
            SERVICE,
            REPOSITORY,
            min_scale=None,  # the iris example's top-level fields, given under scaling here
            max_scale=None,
            # The unit tests' full spec, without its Secret reference (the local runtime has no Secrets).
            scaling=GPU_SPEC["scaling"],
            resources=GPU_SPEC["resources"],
        )
    )
    v1 = stack.push(f"{REPOSITORY}:v1")
    assert stack.follow(SERVICE, v1.rollout_id(SERVICE))["phase"] == "PROMOTED"

    template = stack.kubectl_json("get", "ksvc", SERVICE, "-n", E2E_NAMESPACE)["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("autoscaling.knative.dev/")} == {
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/max-scale": "4",
        "autoscaling.knative.dev/metric": "rps",
        "autoscaling.knative.dev/target": "25",
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "1m30s",
    }
    spec = template["spec"]
    assert spec["containerConcurrency"] == 8
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert spec["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"},
    }
