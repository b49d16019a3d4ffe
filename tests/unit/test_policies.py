"""Endpoint auth as Istio objects, and the deploy step applying (and removing) them."""

from __future__ import annotations

import json
from typing import Any

from shared.phases import Phase
from shared.policies import FakePolicies, policy_objects
from shared.spec import parse_spec
from tests.fakes import World, digest_of, iris_spec
from tests.unit.test_auth_spec import RSA_JWKS

AUTH = {
    "issuers": [
        {
            "issuer": "https://accounts.google.com",
            "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs",
            "audiences": ["iris"],
        },
        {"issuer": "hekaton-local", "jwks": RSA_JWKS},
    ],
    "principals": ["hekaton-local/*", "https://accounts.google.com/1234"],
    "claims": {"groups": ["ml"]},
}


def test_the_objects_select_the_services_pods_and_require_a_principal() -> None:
    spec = parse_spec(iris_spec(auth=AUTH))
    assert spec.auth is not None
    authn, authz = policy_objects("models", "iris", spec.auth)
    for obj in (authn, authz):
        assert obj["apiVersion"] == "security.istio.io/v1"
        assert obj["metadata"] == {
            "name": "hekaton-iris-auth",
            "namespace": "models",
            "labels": {"hekaton.dev/service": "iris"},
        }
        assert obj["spec"]["selector"] == {"matchLabels": {"serving.knative.dev/service": "iris"}}
    assert authn["kind"] == "RequestAuthentication"
    google, local = authn["spec"]["jwtRules"]
    assert google == {
        "issuer": "https://accounts.google.com",
        "jwksUri": "https://www.googleapis.com/oauth2/v3/certs",
        "audiences": ["iris"],
    }
    assert json.loads(local["jwks"]) == RSA_JWKS and "jwksUri" not in local
    assert authz["kind"] == "AuthorizationPolicy"
    assert authz["spec"]["action"] == "ALLOW"
    assert authz["spec"]["rules"] == [
        {
            "from": [{"source": {"requestPrincipals": AUTH["principals"]}}],
            "when": [{"key": "request.auth.claims[groups]", "values": ["ml"]}],
        }
    ]


def _policies(world: World) -> Any:
    policies = world.deps.policies
    assert isinstance(policies, FakePolicies)
    return policies


def test_deploy_applies_the_policies_and_a_spec_without_auth_removes_them() -> None:
    world = World.create()
    world.register(auth=AUTH)
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()
    assert world.only_rollout(digest_of("v1")).phase is Phase.PROMOTED
    assert set(_policies(world).objects) == {("models", "iris")}
    world.register()  # auth section removed
    world.push(pipeline, "v2")
    pipeline.run()
    assert _policies(world).objects == {}
    assert _policies(world).calls[-1] == ("models", "iris", False)
