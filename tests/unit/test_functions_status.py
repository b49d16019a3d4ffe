"""The status function's routes over fakes: what `hekaton status/history` read, and 404s that explain."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from functions.status import answer
from shared.api.http import ApiRequest
from shared.errors import RetryableError
from shared.model import IgnoredEvent
from tests.fakes import World, digest_of
from tests.tokens import Issuer

ISSUER: Issuer | None = None


def get(world: World, path: str, *, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET a path with a valid token: (status code, decoded JSON)."""
    assert ISSUER is not None
    path, _, query = path.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    request = ApiRequest("GET", path, params, ISSUER.headers() if headers is None else headers)
    response = answer(world.deps, request)
    return response.status, json.loads(response.encoded())


@pytest.fixture
def world(tmp_path: Any) -> World:
    """v1 promoted, v2 holding 50 % of traffic."""
    global ISSUER
    ISSUER = Issuer.create(tmp_path)
    created = World.create(**ISSUER.settings())
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
            "deleted_at": None,
        }
    ]
    assert body["next_cursor"] is None
    assert get(world, "/healthz")[0] == 200


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/services/nope", "service 'nope' is not registered"),
        ("/services/nope/rollouts", "service 'nope' is not registered"),
        ("/rollouts/nope-123", "rollout 'nope-123' does not exist"),
        ("/metrics", "no such path '/metrics'"),
        ("/services/..%2Fetc", "is not a service name"),
        ("/rollouts/a b", "is not a rollout id"),
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


def test_a_bug_is_a_json_500_logged_with_its_trace_not_a_framework_traceback(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    world.store.get_service = broken  # type: ignore[method-assign]
    status, body = get(world, "/services/iris")

    assert status == 500
    assert body == {"error": "internal error in hekaton: the function's log has the stack trace"}
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert (
        record.getMessage()
        == "unexpected error answering GET /services/iris; the stack trace says where"
    )
    assert record.exc_info is not None and isinstance(record.exc_info[1], ZeroDivisionError)


def test_ignored_messages_are_listed(world: World) -> None:
    """What was acknowledged without action is visible, newest first."""
    world.store.record_ignored(
        IgnoredEvent(
            "m-1", "ingest", "no registered service follows repository x", world.clock.now()
        )
    )
    status, body = get(world, "/ignored")
    assert status == 200 and [e["message_id"] for e in body["ignored"]] == ["m-1"]
    assert body["total"] == 1


@pytest.mark.parametrize(
    "path", ["/services", "/services/iris", "/services/iris/rollouts", "/ignored", "/nope"]
)
def test_without_a_valid_token_the_answer_is_401_and_no_data(world: World, path: str) -> None:
    assert ISSUER is not None
    stranger = Issuer.create(ISSUER.folder / "stranger")
    for headers in (
        {},
        {"authorization": "Bearer not-a-jwt"},
        {"authorization": "Basic YW5uOnB3"},
        stranger.headers(),  # signed by another key
        {"authorization": f"Bearer {ISSUER.token(ttl_seconds=-120)}"},  # expired
    ):
        status, body = get(world, path, headers=headers)
        assert status == 401, (headers, body)
        assert set(body) == {"error"} and "iris" not in json.dumps(body)


def test_a_verified_principal_who_is_not_allowed_gets_403(world: World) -> None:
    assert ISSUER is not None
    status, body = get(world, "/services", headers=ISSUER.headers("mallory@elsewhere.org"))
    assert status == 403 and "mallory@elsewhere.org is not allowed" in body["error"]


def test_health_and_openapi_need_no_token(world: World) -> None:
    status, body = get(world, "/healthz", headers={})
    assert (status, body["ok"], body["up"], body["down"]) == (
        200,
        True,
        ["firestore", "kubernetes"],
        {},
    )
    status, body = get(world, "/openapi.json", headers={})
    assert status == 200 and "/rollouts/{id}/decisions" in body["paths"]


def test_health_is_503_naming_the_dependency_that_is_down(world: World) -> None:
    world.deps.probes[1].error = RetryableError(
        "Kubernetes API at http://127.0.0.1:9 is unreachable"
    )  # type: ignore[attr-defined]
    status, body = get(world, "/healthz", headers={})
    assert status == 503 and body["ok"] is False
    assert body["up"] == ["firestore"]
    assert list(body["down"]) == ["kubernetes"] and "unreachable" in body["down"]["kubernetes"]
    assert "services" not in body  # no data in a health answer


def test_lists_are_paginated_with_cursors(world: World) -> None:
    for n in range(5):
        world.store.record_ignored(
            IgnoredEvent(f"m-{n}", "ingest", "x", world.clock.now().replace(second=n))
        )
    seen: list[str] = []
    cursor = ""
    while True:
        status, body = get(world, f"/ignored?limit=2&cursor={cursor}")
        assert status == 200 and body["total"] == 5
        seen += [e["message_id"] for e in body["ignored"]]
        if body["next_cursor"] is None:
            break
        cursor = body["next_cursor"]
    assert seen == ["m-4", "m-3", "m-2", "m-1", "m-0"]
    status, body = get(world, "/services/iris/rollouts?limit=1")
    assert [r["revision"] for r in body["rollouts"]] == [world.revision("v2")]
    status, body = get(world, f"/services/iris/rollouts?limit=1&cursor={body['next_cursor']}")
    assert [r["revision"] for r in body["rollouts"]] == [world.revision("v1")]
    assert get(world, "/ignored?cursor=garbage!")[0] == 422
    assert get(world, "/ignored?limit=1000")[0] == 422


def test_decisions_after_a_sequence_number(world: World) -> None:
    rid = world.rollouts()[0].id
    status, body = get(world, f"/rollouts/{rid}/decisions?after=2")
    assert status == 200 and next(d["seq"] for d in body["decisions"]) == 3
    last = body["last_seq"]
    status, body = get(world, f"/rollouts/{rid}/decisions?after={last}")
    assert body["decisions"] == [] and body["last_seq"] == last


def test_an_ignored_record_carries_the_expiry_its_ttl_policy_uses(world: World) -> None:
    """deploy.sh's Firestore TTL policy deletes records after `expires_at`; each one has it."""
    from functions.manifest import IGNORED_EXPIRY_FIELD
    from shared.ignoring import RETENTION, record_ignored

    record_ignored(world.deps, function="ingest", message_id="m-9", reason="bad", log=False)
    status, body = get(world, "/ignored")
    (item,) = body["ignored"]
    assert status == 200
    expires = datetime.fromisoformat(item[IGNORED_EXPIRY_FIELD])
    assert expires - datetime.fromisoformat(item["at"]) == RETENTION
