"""The local Knative webhook on scaling annotations and container resources: what Knative refuses."""

from __future__ import annotations

from typing import Any

from local.kube.knative_admission import validate
from shared.knative import _template
from shared.spec import parse_spec
from shared.steps.deploy import revision_template
from tests.fakes import iris_spec
from tests.unit.test_scaling_spec import GPU_SPEC, rollout


def service(annotations: dict[str, str], container: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "iris"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [{"image": "r.io/iris", **(container or {})}]},
            }
        },
    }


def problems(obj: dict[str, Any]) -> list[str]:
    return [f"{e.field}: {e.message()}" for e in validate("Service", obj, None)]


def test_what_hekaton_writes_for_a_full_spec_is_accepted() -> None:
    template = _template(None, revision_template(parse_spec(iris_spec(**GPU_SPEC)), rollout()))
    template["metadata"]["name"] = "iris-00001"
    assert problems({"metadata": {"name": "iris"}, "spec": {"template": template}}) == []


def test_min_scale_above_max_scale_is_refused_but_max_zero_is_unbounded() -> None:
    found = problems(
        service(
            {"autoscaling.knative.dev/min-scale": "3", "autoscaling.knative.dev/max-scale": "2"}
        )
    )
    assert found == [
        'spec.template.metadata.annotations[autoscaling.knative.dev/max-scale]: Invalid value: "2": '
        "max-scale=2 is less than min-scale=3"
    ]
    assert (
        problems(
            service(
                {"autoscaling.knative.dev/min-scale": "3", "autoscaling.knative.dev/max-scale": "0"}
            )
        )
        == []
    )


def test_metric_target_and_retention_are_checked() -> None:
    found = problems(
        service(
            {
                "autoscaling.knative.dev/metric": "gpu",
                "autoscaling.knative.dev/target": "0",
                "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "soon",
            }
        )
    )
    assert [line.split(": ", 1)[0] for line in found] == [
        "spec.template.metadata.annotations[autoscaling.knative.dev/metric]",
        "spec.template.metadata.annotations[autoscaling.knative.dev/target]",
        "spec.template.metadata.annotations[autoscaling.knative.dev/scale-to-zero-pod-retention-period]",
    ]
    hpa = {
        "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/metric": "cpu",
    }
    assert problems(service({**hpa, "autoscaling.knative.dev/target": "80"})) == []


def test_resource_quantities_must_parse() -> None:
    found = problems(
        service(
            {}, {"resources": {"limits": {"memory": "1GB", "cpu": "-1"}, "requests": {"cpu": 0.5}}}
        )
    )
    assert [line.split(": ", 1)[0] for line in found] == [
        "spec.template.spec.containers[0].resources.limits[memory]",
        "spec.template.spec.containers[0].resources.limits[cpu]",
    ]
