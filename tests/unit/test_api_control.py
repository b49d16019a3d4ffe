"""The control API over fakes: identity from the token, one path through the engine, bad input refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.control import public
from shared.api import control
from shared.api.control import body_outline
from shared.api.http import ApiRequest
from shared.api.serve import serve
from shared.phases import Phase
from tests.fakes import REPOSITORY, World, digest_of, iris_spec
from tests.tokens import Issuer


class Api:
    """Calls the control API as a principal."""

    def __init__(self, world: World, issuer: Issuer) -> None:
        self.world, self.issuer = world, issuer

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        principal: str = "ann@hekaton.local",
        key: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        sent = dict(self.issuer.headers(principal) if headers is None else headers)
        if key:
            sent["idempotency-key"] = key
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        response = serve(
            self.world.deps, ApiRequest(method, path, {}, sent, data), control.routes, public
        )
        return response.status, json.loads(response.encoded())


@pytest.fixture
def api(tmp_path: Any) -> Api:
    issuer = Issuer.create(tmp_path)
    world = World.create(**issuer.settings())
    return Api(world, issuer)


def _image(tag: str) -> str:
    return f"{REPOSITORY}:{tag}@{digest_of(tag)}"


def deployed(api: Api, **spec: Any) -> None:
    """iris created through the API with v1 deployed, then v2 baking at 10 %."""
    status, body = api.call(
        "POST", "/services", {"spec": iris_spec(**spec), "image": _image("v1")}, key="c1"
    )
    assert status == 201 and body["created"] and body["rollout_id"], body
    pipeline = api.world.pipeline()
    pipeline.run()
    status, body = api.call(
        "POST", "/services", {"spec": iris_spec(**spec), "image": _image("v2")}, key="c2"
    )
    assert status == 200 and not body["created"]
    pipeline.run(until=lambda: api.world.rollouts()[0].traffic_percent == 10)


def test_create_deploy_and_steer_a_rollout(api: Api) -> None:
    deployed(api, bake_seconds=30)
    rid = api.world.rollouts()[0].id
    status, body = api.call(
        "POST", f"/rollouts/{rid}/pause", {"reason": "look at it", "deadline_seconds": 600}
    )
    assert (status, body["phase"]) == (200, "PAUSED")
    status, body = api.call("POST", f"/rollouts/{rid}/resume", {"reason": "fine"})
    assert (status, body["phase"]) == (200, "SHIFTING")
    status, body = api.call("POST", "/services/iris/promote", {"reason": "ship it"})
    assert (status, body["phase"]) == (200, "PROMOTING")
    decisions = api.world.store.decisions(rid)
    assert [d.values.get("requested_by") for d in decisions[-3:]] == ["ann@hekaton.local"] * 3
    status, body = api.call("POST", f"/rollouts/{rid}/resume")
    assert status == 409 and "it applies to PAUSED" in body["error"]


def test_rollback_is_applied_once_per_idempotency_key(api: Api) -> None:
    deployed(api, bake_seconds=30)
    first = api.call("POST", "/services/iris/rollback", {"reason": "p99"}, key="rb-1")
    again = api.call("POST", "/services/iris/rollback", {"reason": "p99"}, key="rb-1")
    assert first[0] == again[0] == 200
    assert (first[1]["status"], again[1]["status"]) == ("applied", "repeated")
    assert api.world.traffic() == {api.world.revision("v1"): 100}
    assert api.world.rollouts()[0].phase is Phase.ROLLED_BACK


def test_rollback_to_a_revision_that_never_served_is_refused_and_recorded(api: Api) -> None:
    deployed(api, bake_seconds=30)
    before = api.world.traffic()
    status, body = api.call(
        "POST", "/services/iris/rollback", {"revision": api.world.revision("v2")}
    )
    assert status == 422 and "never served iris" in body["error"]
    assert api.world.traffic() == before
    assert any("never served" in e.reason for e in api.world.store.list_ignored())


def test_delete_removes_the_service_and_keeps_its_history(api: Api) -> None:
    deployed(api, bake_seconds=30)
    status, body = api.call("DELETE", "/services/iris", key="del-1")
    assert status == 200 and body["removed_from_cluster"] is True
    assert api.world.serving.get_service("models", "iris") is None
    assert api.world.rollouts()[0].phase is Phase.DELETED
    status, body = api.call("GET", "/services/iris")
    assert status == 200 and body["deleted_by"] == "ann@hekaton.local"
    assert api.call("DELETE", "/services/iris", key="del-1")[1]["status"] == "repeated"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe{", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"[" * 5000 + b"]" * 5000, "nested deeper"),
        (json.dumps({"reason": "x" * 70_000}).encode(), "longer than"),
        (json.dumps({"reason": "ok", "revison": "typo"}).encode(), "unknown field 'revison'"),
        (json.dumps({"revision": 5}).encode(), "'revision' must be a string"),
        (json.dumps({"revision": "../../etc/passwd"}).encode(), "is not a revision name"),
        (b"x" * 300_000, "larger than"),
    ],
)
def test_garbage_bodies_are_refused_with_a_reason_and_change_nothing(
    api: Api, raw: bytes, message: str
) -> None:
    deployed(api, bake_seconds=30)
    before = (api.world.traffic(), api.world.rollouts())
    status, body = api.call("POST", "/services/iris/rollback", raw=raw)
    assert status == 422 and message in body["error"], body
    assert (api.world.traffic(), api.world.rollouts()) == before
    recorded = [e for e in api.world.store.list_ignored() if e.function == "control"]
    assert recorded and len(recorded[0].excerpt) <= 300 and len(recorded[0].reason) <= 500


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/services/nope/rollback", 404),
        ("POST", "/services/nope/abort", 404),
        ("POST", "/rollouts/nope-1/abort", 404),
        ("POST", "/rollouts/..%2F..%2Fx/abort", 404),
        ("DELETE", "/services/Not_A_Name", 404),
        ("POST", "/services/iris/explode", 404),
    ],
)
def test_unknown_things_are_404(api: Api, method: str, path: str, status: int) -> None:
    deployed(api, bake_seconds=30)
    assert api.call(method, path)[0] == status


def test_identity_comes_from_the_token_never_the_body(api: Api) -> None:
    deployed(api, bake_seconds=30)
    assert api.call("POST", "/services/iris/abort", headers={})[0] == 401
    assert api.call("POST", "/services/iris/abort", principal="eve@evil.org")[0] == 403
    assert api.world.rollouts()[0].active  # nothing happened
    status, _body = api.call(
        "POST", "/services/iris/abort", {"reason": "x", "requested_by": "root"}
    )
    assert status == 422  # a body cannot even claim an identity
    status, _ = api.call("POST", "/services/iris/abort", {"reason": "bob said so"})
    last = api.world.store.decisions(api.world.rollouts()[0].id)[-1]
    assert last.values["requested_by"] == "ann@hekaton.local"


def test_bad_specs_are_refused_naming_the_field(api: Api) -> None:
    status, body = api.call("POST", "/services", {"spec": iris_spec(steps=[50, 10])})
    assert status == 422 and "steps" in body["error"]
    status, body = api.call("POST", "/services", {"spec": iris_spec(), "image": f"{REPOSITORY}:v1"})
    assert status == 422 and "needs a digest" in body["error"]
    assert api.world.store.get_service("iris") is None


@pytest.mark.parametrize(
    "secret_spec",
    [
        {"name": "iris", "env": {"DB_PASSWORD": "hunter2-PLANTED"}},
        {
            "name": "iris",
            "validation": {"requests": [{"headers": {"Authorization": "Bearer hunter2-PLANTED"}}]},
        },
    ],
)
def test_a_spec_refused_for_a_secret_leaves_no_trace_of_it(
    api: Api, secret_spec: dict[str, object]
) -> None:
    # The secret comes first in the body, where a raw excerpt of the refusal would have kept it.
    status, body = api.call("POST", "/services", {"spec": secret_spec})
    assert status == 422, body
    assert "hunter2-PLANTED" not in json.dumps(body)
    [recorded] = [e for e in api.world.store.list_ignored() if e.function == "control"]
    assert "hunter2-PLANTED" not in recorded.excerpt + recorded.reason
    assert recorded.excerpt.endswith("bytes, keys spec (values not kept)")
    status, page = api.call("GET", "/ignored")
    assert status == 200 and "hunter2-PLANTED" not in json.dumps(page)


@pytest.mark.parametrize(
    ("raw", "outline"),
    [
        (b"", "0 bytes, a JSON NoneType (values not kept)"),
        (b"[1, 2]", "6 bytes, a JSON list (values not kept)"),
        (b"{not json", "9 bytes, not JSON (values not kept)"),
        (b"[" * 5000 + b"]" * 5000, "10000 bytes, not JSON (values not kept)"),
        (json.dumps({f"k{i}": i for i in range(25)}).encode(), ", k19, … (values not kept)"),
    ],
)
def test_a_refused_body_is_recorded_by_its_shape_only(raw: bytes, outline: str) -> None:
    assert body_outline(raw).endswith(outline)
