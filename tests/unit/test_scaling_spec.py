"""Scaling, resources and env secrets: register-time errors name the field; what the template carries."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from shared.knative import MANAGED_ANNOTATION, _template
from shared.model import Rollout
from shared.phases import Phase
from shared.scaling_spec import parse_quantity
from shared.spec import ServiceSpec, SpecError, parse_spec
from shared.steps.deploy import revision_template
from tests.fakes import iris_spec
from tests.unit.test_traffic import rollout as traffic_rollout

GPU_SPEC: dict[str, Any] = {
    "scaling": {
        "min_scale": 1,
        "max_scale": 4,
        "metric": "rps",
        "target": 25,
        "scale_to_zero_retention": "1m30s",
        "container_concurrency": 8,
    },
    "resources": {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": 2, "memory": "1Gi"},
        "gpu": {"count": 1, "type": "nvidia-l4"},
    },
    "env": {"MODE": "fast", "DB_PASSWORD": {"secret": "iris-db", "key": "password"}},
}


def errors_of(**overrides: Any) -> list[str]:
    """The lines of the SpecError for the iris spec with `overrides`."""
    with pytest.raises(SpecError) as caught:
        parse_spec(iris_spec(**overrides), origin="iris.yaml")
    return [line.strip() for line in str(caught.value).splitlines()[1:]]


def only_error(**overrides: Any) -> str:
    found = errors_of(**overrides)
    assert len(found) == 1, found
    return found[0]


def rollout() -> Rollout:
    """A rollout being deployed (candidate `iris-new`)."""
    return traffic_rollout(Phase.DEPLOYING)


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"scaling": {"min_scale": 3, "max_scale": 2}}, "scaling.max_scale", "must not exceed"),
        ({"min_scale": 3, "max_scale": 2}, "scaling.max_scale", "must not exceed"),
        ({"scaling": {"metric": "cpu", "target": 1}}, "scaling.metric", "'concurrency' or 'rps'"),
        ({"scaling": {"metric": "rps"}}, "scaling", "needs scaling.target"),
        ({"scaling": {"target": 0}}, "scaling.target", "greater than or equal to 0.01"),
        (
            {"scaling": {"scale_to_zero_retention": "5 min"}},
            "scaling.scale_to_zero_retention",
            "duration",
        ),
        ({"scaling": {"container_concurrency": 1001}}, "scaling.container_concurrency", "1000"),
        (
            {"resources": {"gpu": {"count": 1}}},
            "resources.gpu.type",
            "required with resources.gpu.count",
        ),
        (
            {"resources": {"gpu": {"type": "nvidia-l4"}}},
            "resources.gpu.type",
            "needs resources.gpu.count",
        ),
        (
            {"resources": {"gpu": {"count": 1, "type": "nvidia-rtx-4090"}}},
            "resources.gpu.type",
            "unknown accelerator",
        ),
        (
            {"resources": {"gpu": {"count": 0, "type": "nvidia-l4"}}},
            "resources.gpu.count",
            "greater than or equal to 1",
        ),
        (
            {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}},
            "resources.requests",
            "resources.limits.cpu",
        ),
        (
            {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1G"}}},
            "resources.requests",
            "memory 2Gi",
        ),
        (
            {"resources": {"limits": {"memory": "1GB"}}},
            "resources.limits.memory",
            "not a Kubernetes quantity",
        ),
        (
            {"resources": {"requests": {"cpu": "-1"}}},
            "resources.requests.cpu",
            "not a Kubernetes quantity",
        ),
        ({"resources": {"limits": {"gpu": 1}}}, "resources.limits.gpu", "Extra inputs"),
    ],
)
def test_impossible_settings_are_refused_naming_the_field(
    overrides: dict[str, Any], field: str, words: str
) -> None:
    """Each impossible setting is one error line that starts with its field and says what is wrong."""
    line = only_error(**overrides)
    assert line.startswith(f"{field}: ") and words in line, line


def test_top_level_scale_is_read_as_scaling_and_not_given_twice() -> None:
    """The older top-level min_scale/max_scale still work; the same field in both places is refused."""
    spec = parse_spec(iris_spec(min_scale=1, max_scale=3))
    assert (spec.scaling.min_scale, spec.scaling.max_scale) == (1, 3)
    assert "min_scale" not in spec.to_document() and spec.to_document()["scaling"]["max_scale"] == 3
    assert "given twice" in only_error(min_scale=1, scaling={"min_scale": 2})


def test_quantities_parse_as_kubernetes_does() -> None:
    assert parse_quantity("500m") == Decimal("0.5")
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("1G") == 10**9
    assert parse_quantity("1e3") == 1000
    assert parse_quantity("2") == 2
    for bad in ("1GB", "", "1.2.3", "m", "-1", "1 Gi"):
        with pytest.raises(ValueError, match="not a Kubernetes quantity"):
            parse_quantity(bad)


@pytest.mark.parametrize(
    "name", ["DB_PASSWORD", "API_TOKEN", "HF_TOKEN", "CLIENT_SECRET", "API_KEY", "KEY"]
)
def test_a_secret_in_plain_text_is_refused_without_echoing_it(name: str) -> None:
    """A literal value under a secret-looking name is refused at register; the message never holds it."""
    line = only_error(env={name: "hunter2-value"})
    assert line.startswith("env: ") and name in line and "{secret: SECRET_NAME, key: KEY}" in line
    assert "hunter2" not in line


def test_env_values_are_strings_or_secret_references() -> None:
    assert "expected a string or {secret" in only_error(env={"WORKERS": 4})
    assert "secret reference" in only_error(env={"DB_PASSWORD": {"secret": "Bad_Name", "key": "k"}})
    assert "secret reference" in only_error(env={"DB_PASSWORD": {"secret": "db"}})
    assert "not an environment variable name" in only_error(env={"1 BAD": "x"})
    # Names that only look alike are plain settings.
    spec = parse_spec(iris_spec(env={"MONKEY_MODE": "on", "KEYSPACE": "k", "DB_PASSWORD": ""}))
    assert spec.env["MONKEY_MODE"] == "on"


def test_the_stored_spec_holds_references_not_secrets_and_round_trips() -> None:
    spec = parse_spec(iris_spec(**GPU_SPEC))
    document = spec.to_document()
    assert document["env"]["DB_PASSWORD"] == {"secret": "iris-db", "key": "password"}
    assert ServiceSpec.model_validate(document) == spec


def test_revision_template_carries_scaling_resources_gpu_and_secret_refs() -> None:
    template = revision_template(parse_spec(iris_spec(**GPU_SPEC)), rollout())
    assert template.annotations == {
        "serving.knative.dev/progress-deadline": "60s",
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/max-scale": "4",
        "autoscaling.knative.dev/metric": "rps",
        "autoscaling.knative.dev/target": "25",
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "1m30s",
    }
    assert template.resources == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"},
    }
    assert template.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert template.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert template.container_concurrency == 8
    assert template.env == [
        {
            "name": "DB_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "iris-db", "key": "password"}},
        },
        {"name": "MODE", "value": "fast"},
    ]


def test_knative_template_merges_into_the_existing_one() -> None:
    """The Service's template keeps what the team set outside hekaton and gains the spec's settings."""
    template = revision_template(parse_spec(iris_spec(**GPU_SPEC)), rollout())
    current = {
        "metadata": {"name": "iris-old", "annotations": {"team/owner": "ml"}},
        "spec": {
            "containers": [{"image": "old", "env": [{"name": "OTHER", "value": "1"}]}],
            "nodeSelector": {"pool": "serving"},
        },
    }
    merged = _template(current, template)
    assert merged["metadata"]["annotations"]["team/owner"] == "ml"
    assert merged["metadata"]["annotations"]["autoscaling.knative.dev/target"] == "25"
    spec = merged["spec"]
    assert spec["containerConcurrency"] == 8
    assert spec["nodeSelector"] == {
        "pool": "serving",
        "cloud.google.com/gke-accelerator": "nvidia-l4",
    }
    assert [t["key"] for t in spec["tolerations"]] == ["nvidia.com/gpu"]
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert [e["name"] for e in container["env"]] == ["DB_PASSWORD", "MODE", "OTHER"]
    assert current["spec"]["containers"][0]["image"] == "old"  # not mutated


def test_what_the_spec_no_longer_sets_leaves_the_template_and_the_teams_settings_stay() -> None:
    """A GPU, a min-scale or an env var dropped from the spec is dropped from the next revision
    (hekaton records what it set in an annotation); what the team set outside hekaton stays."""
    team = {
        "metadata": {"name": "iris-old", "annotations": {"team/owner": "ml"}},
        "spec": {
            "containers": [{"image": "old", "env": [{"name": "OTHER", "value": "1"}]}],
            "nodeSelector": {"pool": "serving"},
            "tolerations": [{"key": "team", "operator": "Exists"}],
        },
    }
    with_gpu = _template(team, revision_template(parse_spec(iris_spec(**GPU_SPEC)), rollout()))
    plain_spec = parse_spec(iris_spec(scaling={"keep_previous_warm_seconds": 0}))
    plain = _template(with_gpu, revision_template(plain_spec, rollout()))

    annotations = plain["metadata"]["annotations"]
    assert annotations["team/owner"] == "ml"
    assert not [k for k in annotations if k.startswith("autoscaling.knative.dev/")]
    spec = plain["spec"]
    assert "containerConcurrency" not in spec
    assert spec["nodeSelector"] == {"pool": "serving"}
    assert spec["tolerations"] == [{"key": "team", "operator": "Exists"}]
    container = spec["containers"][0]
    assert "resources" not in container
    assert [e["name"] for e in container["env"]] == ["OTHER"]
    # Without a record of what hekaton set (a template from before this rule), nothing is removed.
    with_gpu["metadata"]["annotations"].pop(MANAGED_ANNOTATION)
    unknown = _template(with_gpu, revision_template(plain_spec, rollout()))
    assert unknown["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_a_spec_without_scaling_sets_the_deadline_and_the_min_scale_of_the_warm_window() -> None:
    """The default warm window needs one pod per routed revision (Knative: a 0 % revision is kept
    only with a min-scale); without a window, only the deadline."""
    template = revision_template(parse_spec({"name": "m", "image": "r.io/p/m"}), rollout())
    assert template.annotations == {
        "serving.knative.dev/progress-deadline": "300s",
        "autoscaling.knative.dev/min-scale": "1",
    }
    cold = parse_spec(
        {"name": "m", "image": "r.io/p/m", "scaling": {"keep_previous_warm_seconds": 0}}
    )
    template = revision_template(cold, rollout())
    assert set(template.annotations) == {"serving.knative.dev/progress-deadline"}
    assert (template.resources, template.node_selector, template.tolerations) == ({}, {}, [])
    assert template.container_concurrency is None and template.env == []
