"""Knative revisions: naming, ownership, labels, BYO names, what the runtime is asked to run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kube_helpers import FakeRuntime, Knative, condition, error_body, is_ready, knative_service
from kubernetes import client as k8s

pytestmark = pytest.mark.timeout(60)

Eventually = Callable[..., Any]


def _template(image: str, name: str | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"spec": {"containers": [{"image": image}]}}
    if name:
        template["metadata"] = {"name": name}
    return {"spec": {"template": template}}


def test_service_owns_configuration_and_route(knative: Knative, eventually: Eventually) -> None:
    service = knative.create(knative_service("owner", labels={"team": "ml"}))
    uid = service["metadata"]["uid"]
    for plural in ("configurations", "routes"):
        child = eventually(
            lambda plural=plural: knative.get(plural, "owner"), what=f"{plural}/owner"
        )
        (reference,) = child["metadata"]["ownerReferences"]
        assert reference == {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": "owner",
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert child["metadata"]["labels"] == {"team": "ml", "serving.knative.dev/service": "owner"}
    configuration = knative.get("configurations", "owner")
    assert configuration is not None
    assert configuration["spec"]["template"] == service["spec"]["template"]


def test_first_revision_is_named_00001_with_labels_and_owner(
    knative: Knative, eventually: Eventually
) -> None:
    service = knative.create(
        knative_service("named", annotations={"autoscaling.knative.dev/min-scale": "1"})
    )
    revision = eventually(
        lambda: knative.get("revisions", "named-00001"), what="revision named-00001"
    )
    assert revision["metadata"]["labels"] == {
        "serving.knative.dev/service": "named",
        "serving.knative.dev/configuration": "named",
        "serving.knative.dev/configurationGeneration": "1",
    }
    assert revision["metadata"]["annotations"] == {"autoscaling.knative.dev/min-scale": "1"}
    configuration = knative.get("configurations", "named")
    assert configuration is not None
    (reference,) = revision["metadata"]["ownerReferences"]
    assert (reference["kind"], reference["uid"]) == (
        "Configuration",
        configuration["metadata"]["uid"],
    )
    assert revision["spec"] == service["spec"]["template"]["spec"]


def test_each_template_change_makes_the_next_revision(
    knative: Knative, eventually: Eventually
) -> None:
    knative.create(knative_service("counted", "example.test/app:v1"))
    eventually(lambda: is_ready(knative.get("services", "counted")), what="counted ready")
    knative.patch("counted", _template("example.test/app:v2"))
    eventually(lambda: knative.get("revisions", "counted-00002"), what="counted-00002")
    revision = knative.get("revisions", "counted-00002")
    assert revision is not None
    assert revision["metadata"]["labels"]["serving.knative.dev/configurationGeneration"] == "2"
    assert revision["spec"]["containers"][0]["image"] == "example.test/app:v2"
    eventually(lambda: is_ready(knative.get("services", "counted")), what="counted ready again")
    service = knative.get("services", "counted")
    assert service is not None
    assert service["status"]["latestCreatedRevisionName"] == "counted-00002"
    assert service["status"]["latestReadyRevisionName"] == "counted-00002"


def test_traffic_and_label_changes_make_no_revision(
    knative: Knative, eventually: Eventually
) -> None:
    knative.create(knative_service("stable"))
    eventually(lambda: is_ready(knative.get("services", "stable")), what="stable ready")
    knative.patch("stable", {"metadata": {"labels": {"new": "label"}}})
    knative.patch(
        "stable",
        {"spec": {"traffic": [{"revisionName": "stable-00001", "percent": 100, "tag": "current"}]}},
    )
    service = eventually(
        lambda: (
            (s := knative.get("services", "stable"))
            and is_ready(s)
            and s["status"]["traffic"][0].get("tag")
            and s
        ),
        what="the tagged traffic to be ready",
    )
    assert service["metadata"]["generation"] == 2
    assert knative.revisions() == ["stable-00001"]
    configuration = knative.get("configurations", "stable")
    assert configuration is not None and configuration["metadata"]["generation"] == 1


def test_bring_your_own_revision_names(knative: Knative, eventually: Eventually) -> None:
    knative.create(knative_service("byo", "example.test/app:v1", template_name="byo-first"))
    eventually(lambda: knative.get("revisions", "byo-first"), what="revision byo-first")
    knative.patch("byo", _template("example.test/app:v2", "byo-second"))
    eventually(lambda: knative.get("revisions", "byo-second"), what="revision byo-second")
    assert sorted(knative.revisions()) == ["byo-first", "byo-second"]


def test_template_change_without_a_new_byo_name_is_rejected(
    knative: Knative, eventually: Eventually
) -> None:
    knative.create(knative_service("pinned", "example.test/app:v1", template_name="pinned-one"))
    with pytest.raises(k8s.ApiException) as raised:
        knative.patch("pinned", _template("example.test/app:v2", "pinned-one"))
    assert raised.value.status == 422
    body = error_body(raised.value)
    (cause,) = body["details"]["causes"]
    assert cause["field"] == "spec.template.metadata.name"
    assert "Saw the following changes without a name change (-old +new)" in cause["message"]
    assert "example.test/app:v2" in cause["message"]
    service = knative.get("services", "pinned")
    assert service is not None and service["metadata"]["generation"] == 1
    # Changing something outside the template with the same name is fine.
    knative.patch("pinned", {"metadata": {"labels": {"ok": "yes"}}})


def test_byo_name_must_start_with_the_service_name(knative: Knative) -> None:
    with pytest.raises(k8s.ApiException) as raised:
        knative.create(knative_service("prefixed", template_name="other-v1"))
    assert raised.value.status == 422
    (cause,) = error_body(raised.value)["details"]["causes"]
    assert cause["field"] == "spec.template.metadata.name"
    assert 'must have prefix "prefixed-"' in cause["message"]


@pytest.mark.parametrize(
    ("body_change", "field", "reason"),
    [
        (
            {"containers": [{"name": "c"}]},
            "spec.template.spec.containers[0].image",
            "FieldValueRequired",
        ),
        ({"containers": []}, "spec.template.spec.containers", "FieldValueRequired"),
        (
            {"containers": [{"image": "x.test/a:1", "env": [{"value": "no name"}]}]},
            "spec.template.spec.containers[0].env[0].name",
            "FieldValueRequired",
        ),
        (
            {"containers": [{"image": "x.test/a:1"}], "timeoutSeconds": 9999},
            "spec.template.spec.timeoutSeconds",
            "FieldValueInvalid",
        ),
    ],
)
def test_invalid_templates_are_422_with_the_field(
    knative: Knative, body_change: dict[str, Any], field: str, reason: str
) -> None:
    body = knative_service("broken")
    body["spec"]["template"]["spec"] = body_change
    with pytest.raises(k8s.ApiException) as raised:
        knative.create(body)
    assert raised.value.status == 422
    causes = error_body(raised.value)["details"]["causes"]
    assert {"field": field, "reason": reason} in [
        {"field": c["field"], "reason": c["reason"]} for c in causes
    ]


def test_bad_progress_deadline_annotation_is_422(knative: Knative) -> None:
    body = knative_service(
        "deadline", annotations={"serving.knative.dev/progress-deadline": "soon"}
    )
    with pytest.raises(k8s.ApiException) as raised:
        knative.create(body)
    assert raised.value.status == 422
    (cause,) = error_body(raised.value)["details"]["causes"]
    assert cause["field"] == (
        "spec.template.metadata.annotations[serving.knative.dev/progress-deadline]"
    )


@pytest.mark.parametrize(
    ("annotation", "seconds"), [(None, 120.0), ("30s", 30.0), ("2m", 120.0), ("1m30s", 90.0)]
)
def test_runtime_gets_image_env_and_progress_deadline(
    knative: Knative,
    fake_runtime: FakeRuntime,
    eventually: Eventually,
    annotation: str | None,
    seconds: float,
) -> None:
    annotations = {"serving.knative.dev/progress-deadline": annotation} if annotation else None
    knative.create(
        knative_service(
            "runs",
            "example.test/app:v7",
            annotations=annotations,
            env={"MODEL": "iris", "DEBUG": "1"},
        )
    )
    spec = eventually(
        lambda: fake_runtime.specs.get((knative.namespace, "runs-00001")), what="runtime start"
    )
    assert spec.service == "runs"
    assert spec.image == "example.test/app:v7"
    assert spec.env == {"MODEL": "iris", "DEBUG": "1"}
    assert spec.progress_deadline_seconds == seconds


def test_reusing_an_older_byo_name_fails_revision_creation(
    knative: Knative, eventually: Eventually
) -> None:
    knative.create(knative_service("reuse", "example.test/app:v1", template_name="reuse-a"))
    eventually(lambda: is_ready(knative.get("services", "reuse")), what="reuse-a ready")
    knative.patch("reuse", _template("example.test/app:v2", "reuse-b"))
    eventually(
        lambda: (
            (s := knative.get("services", "reuse"))
            and is_ready(s)
            and s["status"]["latestReadyRevisionName"] == "reuse-b"
        ),
        what="reuse-b ready",
    )
    knative.patch("reuse", _template("example.test/app:v1", "reuse-a"))
    service = eventually(
        lambda: (
            (s := knative.get("services", "reuse"))
            and s["status"].get("observedGeneration") == 3
            and condition(s, "ConfigurationsReady").get("status") == "False"
            and s
        ),
        what="the refused revision name to show",
    )
    configurations_ready = condition(service, "ConfigurationsReady")
    assert configurations_ready["reason"] == "RevisionFailed"
    assert configurations_ready["message"] == (
        "Revision creation failed with message: "
        'revisions.serving.knative.dev "reuse-a" already exists.'
    )
    assert service["status"]["latestReadyRevisionName"] == "reuse-b"
    assert sorted(knative.revisions()) == ["reuse-a", "reuse-b"]
