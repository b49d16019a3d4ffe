"""Knative conditions and status: Ready, failures with Knative's reasons, latest revisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kube_helpers import FakeRuntime, Knative, condition, is_ready, knative_service, settled

from local.kube import conditions
from local.kube.conditions import Condition
from local.kube.contracts import RevisionPhase, RevisionState

pytestmark = pytest.mark.timeout(60)

Eventually = Callable[..., Any]


def _settled(knative: Knative, plural: str, name: str, eventually: Eventually) -> dict[str, Any]:
    return eventually(
        lambda: (obj := knative.get(plural, name)) and settled(obj) and obj,
        what=f"{plural}/{name} to settle",
    )


def _ready(knative: Knative, plural: str, name: str, eventually: Eventually) -> dict[str, Any]:
    return eventually(
        lambda: (obj := knative.get(plural, name)) and is_ready(obj) and obj,
        what=f"{plural}/{name} to be Ready",
    )


def test_ready_service_status(knative: Knative, eventually: Eventually) -> None:
    knative.create(knative_service("happy"))
    service = _ready(knative, "services", "happy", eventually)
    status = service["status"]
    namespace = knative.namespace
    assert status["observedGeneration"] == 1
    assert status["latestCreatedRevisionName"] == "happy-00001"
    assert status["latestReadyRevisionName"] == "happy-00001"
    assert status["url"] == f"http://happy.{namespace}.example.com"
    assert status["address"] == {"url": f"http://happy.{namespace}.svc.cluster.local"}
    for kind in ("Ready", "ConfigurationsReady", "RoutesReady"):
        entry = condition(service, kind)
        assert entry["status"] == "True", kind
        assert entry["lastTransitionTime"].endswith("Z")
    route = _ready(knative, "routes", "happy", eventually)
    assert condition(route, "AllTrafficAssigned")["status"] == "True"
    configuration = _ready(knative, "configurations", "happy", eventually)
    assert configuration["status"]["latestReadyRevisionName"] == "happy-00001"
    revision = _ready(knative, "revisions", "happy-00001", eventually)
    for kind in ("Ready", "ContainerHealthy", "ResourcesAvailable", "Active"):
        assert condition(revision, kind)["status"] == "True", kind
    assert revision["status"]["actualReplicas"] == 1


def test_pending_revision_keeps_the_service_unknown_until_ready(
    knative: Knative, fake_runtime: FakeRuntime, eventually: Eventually
) -> None:
    knative.create(knative_service("waiting", "example.test/pending:v1"))
    revision = eventually(
        lambda: (r := knative.get("revisions", "waiting-00001")) and condition(r, "Ready") and r,
        what="revision status",
    )
    assert condition(revision, "Ready")["status"] == "Unknown"
    assert condition(revision, "Ready")["reason"] == "Deploying"
    # The first reconcile may say "OutOfDate" (no Route status yet); wait for the settled reason.
    service = eventually(
        lambda: (
            (s := knative.get("services", "waiting"))
            and condition(s, "RoutesReady").get("reason") == "RevisionMissing"
            and s
        ),
        what="the service to wait for its revision",
    )
    assert condition(service, "Ready")["status"] == "Unknown"
    assert condition(service, "RoutesReady")["reason"] == "RevisionMissing"
    assert "waiting for a Revision to become ready" in condition(service, "RoutesReady")["message"]
    assert "latestReadyRevisionName" not in service["status"]

    fake_runtime.set_state(
        knative.namespace, "waiting-00001", RevisionState(RevisionPhase.READY, port=1)
    )
    ready = _ready(knative, "services", "waiting", eventually)
    assert ready["status"]["latestReadyRevisionName"] == "waiting-00001"


@pytest.mark.parametrize(
    ("image", "reason", "failing_condition"),
    [
        ("example.test/missing:v1", "ContainerMissing", "ContainerHealthy"),
        ("example.test/crash:v1", "ExitCode1", "ContainerHealthy"),
    ],
)
def test_failed_revision_makes_the_service_revision_failed(
    knative: Knative, eventually: Eventually, image: str, reason: str, failing_condition: str
) -> None:
    knative.create(knative_service("broken", image))
    revision = _settled(knative, "revisions", "broken-00001", eventually)
    assert condition(revision, "Ready")["status"] == "False"
    assert condition(revision, "Ready")["reason"] == reason
    assert condition(revision, failing_condition) == {
        **condition(revision, failing_condition),
        "status": "False",
        "reason": reason,
    }
    # The Service is reconciled before the Route when the revision fails, so it is settled (Ready
    # False) once with RoutesReady still Unknown; wait for the Route's verdict to reach it too.
    service = eventually(
        lambda: (
            (s := knative.get("services", "broken"))
            and settled(s)
            and condition(s, "RoutesReady").get("status") == "False"
            and s
        ),
        what="the failed revision to reach the service's routes",
    )
    ready = condition(service, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RevisionFailed")
    assert ready["message"].startswith('Revision "broken-00001" failed with message: ')
    assert condition(service, "ConfigurationsReady")["status"] == "False"
    assert condition(service, "RoutesReady")["status"] == "False"
    assert condition(service, "RoutesReady")["reason"] == "RevisionMissing"
    assert service["status"]["latestCreatedRevisionName"] == "broken-00001"
    assert "latestReadyRevisionName" not in service["status"]


def test_progress_deadline_failure_is_resources_available(
    knative: Knative, fake_runtime: FakeRuntime, eventually: Eventually
) -> None:
    knative.create(knative_service("slow", "example.test/pending:v1"))
    eventually(lambda: fake_runtime.state(knative.namespace, "slow-00001"), what="runtime start")
    fake_runtime.set_state(
        knative.namespace,
        "slow-00001",
        RevisionState(
            RevisionPhase.FAILED,
            "ProgressDeadlineExceeded",
            "Initial scale was never achieved",
            "ResourcesAvailable",
        ),
    )
    revision = _settled(knative, "revisions", "slow-00001", eventually)
    available = condition(revision, "ResourcesAvailable")
    assert (available["status"], available["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert condition(revision, "Ready")["reason"] == "ProgressDeadlineExceeded"
    service = _settled(knative, "services", "slow", eventually)
    assert condition(service, "Ready")["reason"] == "RevisionFailed"


def test_failed_new_revision_keeps_traffic_on_the_last_ready_one(
    knative: Knative, eventually: Eventually
) -> None:
    knative.create(knative_service("upgrade", "example.test/app:v1"))
    _ready(knative, "services", "upgrade", eventually)
    knative.patch(
        "upgrade",
        {"spec": {"template": {"spec": {"containers": [{"image": "example.test/crash:v2"}]}}}},
    )
    service = eventually(
        lambda: (
            (s := knative.get("services", "upgrade"))
            and settled(s)
            and s["status"].get("latestCreatedRevisionName") == "upgrade-00002"
            and s
        ),
        what="the failed upgrade to show",
    )
    status = service["status"]
    assert status["latestReadyRevisionName"] == "upgrade-00001"
    assert condition(service, "Ready")["reason"] == "RevisionFailed"
    assert condition(service, "RoutesReady")["status"] == "True"
    assert status["traffic"] == [
        {"revisionName": "upgrade-00001", "latestRevision": True, "percent": 100}
    ]


def test_transition_time_moves_only_when_the_status_changes() -> None:
    previous = [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2000-01-01T00:00:00Z"},
        {"type": "Active", "status": "Unknown", "lastTransitionTime": "2000-01-01T00:00:00Z"},
    ]
    rendered = conditions.render(
        previous, [Condition("Ready", "True"), Condition("Active", "True", "Up", "serving")]
    )
    by_type = {c["type"]: c for c in rendered}
    assert by_type["Ready"]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    assert by_type["Active"]["lastTransitionTime"] != "2000-01-01T00:00:00Z"
    assert by_type["Active"]["reason"] == "Up" and by_type["Active"]["message"] == "serving"
    assert [c["type"] for c in rendered] == ["Active", "Ready"]
