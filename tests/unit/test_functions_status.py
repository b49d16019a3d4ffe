"""The status function's routes over fakes: what `hekaton status/history` read, and 404s that explain."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.status import route
from shared.errors import RetryableError
from shared.model import IgnoredEvent
from tests.fakes import World, digest_of


def get(world: World, path: str) -> tuple[int, Any]:
    """GET a path: (status code, decoded JSON)."""
    body, status, headers = route(path, world.deps)
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


@pytest.fixture
def world() -> World:
    """v1 promoted, v2 holding 50 % of traffic."""
    created = World.create()
    created.register()
    pipeline = created.pipeline()
    created.push(pipeline, "v1")
    pipeline.run()
    created.clock.advance(30)
    created.push(pipeline, "v2")
    pipeline.run(until=lambda: created.rollouts()[0].traffic_percent == 50)
    return created


def test_service_status_shows_traffic_active_and_last_rollout(world: World) -> None:
    """The fields the issue requires, with traffic as the cluster reports it."""
    status, body = get(world, "/services/iris")
    assert status == 200
    v1, v2 = world.revision("v1"), world.revision("v2")
    assert (body["service"], body["namespace"], body["stable_revision"]) == ("iris", "models", v1)
    assert body["traffic"] == [
        {"revision": v1, "percent": 50, "tag": "stable"},
        {"revision": v2, "percent": 50, "tag": "candidate"},
    ]
    active = body["active_rollout"]
    assert {k: active[k] for k in ("phase", "digest", "revision", "step")} == {
        "phase": "SHIFTING",
        "digest": digest_of("v2"),
        "revision": v2,
        "step": 1,
    }
    assert active["id"] == world.rollouts()[0].id and active["started_at"]
    assert active["image"].endswith(f":v2@{digest_of('v2')}")
    last = body["last_rollout"]
    assert (last["phase"], last["revision"]) == ("PROMOTED", v1)
    assert last["reason"].startswith(f"{v1} promoted")


def test_history_is_newest_first_with_decisions(world: World) -> None:
    """Each rollout carries its decision log in order."""
    status, body = get(world, "/services/iris/rollouts")
    assert status == 200
    rollouts = body["rollouts"]
    assert [r["revision"] for r in rollouts] == [world.revision("v2"), world.revision("v1")]
    assert [d["outcome"] for d in rollouts[1]["decisions"]] == [
        "created",
        "deployed",
        "ready",
        "first_deploy_validated",
        "promoted",
    ]
    assert [d["seq"] for d in rollouts[0]["decisions"]] == list(
        range(1, len(rollouts[0]["decisions"]) + 1)
    )


def test_one_rollout_and_the_service_list(world: World) -> None:
    """A rollout by id, and the list of services with their active rollout."""
    rollout_id = world.rollouts()[0].id
    status, body = get(world, f"/rollouts/{rollout_id}")
    assert status == 200 and body["id"] == rollout_id and body["service"] == "iris"
    assert body["decisions"][-1]["outcome"] == "step_applied"
    status, body = get(world, "/services")
    assert status == 200
    assert body["services"] == [
        {
            "service": "iris",
            "namespace": "models",
            "image_repository": "registry.local/models/iris",
            "stable_revision": world.revision("v1"),
            "active_rollout_id": rollout_id,
        }
    ]
    assert get(world, "/healthz") == (200, {"ok": True})


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/services/nope", "service 'nope' is not registered"),
        ("/services/nope/rollouts", "service 'nope' is not registered"),
        ("/rollouts/nope-123", "rollout 'nope-123' does not exist"),
        ("/metrics", "no such path '/metrics'"),
    ],
)
def test_unknown_names_get_404_with_a_message(world: World, path: str, message: str) -> None:
    """Unknown services, rollouts and paths answer 404 with an explanation."""
    status, body = get(world, path)
    assert status == 404 and message in body["error"]


def test_status_answers_when_the_cluster_does_not(world: World) -> None:
    """A cluster outage shows as cluster_error; the stored state is still served."""
    world.serving.fail_next("get_service", RetryableError("Kubernetes API unreachable"))
    status, body = get(world, "/services/iris")
    assert status == 200
    assert body["traffic"] == [] and "Kubernetes API unreachable" in body["cluster_error"]
    assert body["active_rollout"]["phase"] == "SHIFTING"


def test_ignored_messages_are_listed(world: World) -> None:
    """What was acknowledged without action is visible, newest first."""
    world.store.record_ignored(
        IgnoredEvent(
            "m-1", "ingest", "no registered service follows repository x", world.clock.now()
        )
    )
    status, body = get(world, "/ignored")
    assert status == 200 and [e["message_id"] for e in body["ignored"]] == ["m-1"]
