"""The local gateway's Istio auth: 401 for a bad token, 403 without an allowed principal, as Envoy."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from local.kube.mesh_auth import MeshAuth, pod_labels
from shared.auth_spec import AuthSpec
from shared.policies import policy_objects

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
JWKS = {"keys": [{**PUBLIC, "kid": "k1", "use": "sig", "alg": "RS256"}]}


def _token(key: Any = KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "hekaton-local", "aud": "iris", "sub": "alice@hekaton.local", "iat": now}
    body |= {"exp": now + 600} | claims
    return "Bearer " + jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def mesh() -> MeshAuth:
    auth = AuthSpec.model_validate(
        {
            "issuers": [{"issuer": "hekaton-local", "jwks": JWKS, "audiences": ["iris"]}],
            "principals": ["hekaton-local/alice@hekaton.local", "hekaton-local/hekaton@*"],
        }
    )
    authn, authz = policy_objects("models", "iris", auth)
    mesh = MeshAuth()
    mesh.set_policies([authn], [authz])
    return mesh


def _check(mesh: MeshAuth, authorization: str | None, service: str = "iris") -> tuple[Any, str]:
    verdict = mesh.check(
        "models", pod_labels(service, f"{service}-1"), "POST", "/predict", authorization
    )
    return verdict.status, verdict.message


def test_an_allowed_principal_passes_and_its_token_is_not_forwarded(mesh: MeshAuth) -> None:
    verdict = mesh.check("models", pod_labels("iris", "iris-1"), "POST", "/", _token())
    assert (verdict.status, verdict.principal) == (None, "hekaton-local/alice@hekaton.local")
    assert verdict.strip_authorization


# Tokens are minted when the test runs, not at collection: a long suite must not expire them.
@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        (lambda: None, (403, "RBAC: access denied")),  # RequestAuthentication lets it in
        (lambda: "Bearer not-a-jwt", (401, "Jwt is not in the form of Header.Payload.Signature")),
        (lambda: _token(OTHER), (401, "Jwt verification fails")),
        (lambda: _token(exp=int(time.time()) - 3600), (401, "Jwt is expired")),
        (lambda: _token(aud="other"), (401, "Audiences in Jwt are not allowed")),
        (lambda: _token(sub="mallory@hekaton.local"), (403, "RBAC: access denied")),
        (lambda: _token(iss="elsewhere"), (403, "RBAC: access denied")),  # no principal
    ],
)
def test_refusals_answer_as_istio(
    mesh: MeshAuth, authorization: Callable[[], str | None], expected: Any
) -> None:
    assert _check(mesh, authorization()) == expected


def test_other_services_and_namespaces_are_not_selected(mesh: MeshAuth) -> None:
    assert _check(mesh, None, service="wine") == (None, "")
    verdict = mesh.check("default", pod_labels("iris", "iris-1"), "GET", "/", None)
    assert verdict.status is None


def test_a_jwks_uri_is_fetched_once_and_cached() -> None:
    fetched: list[str] = []

    def fetch(uri: str) -> bytes:
        fetched.append(uri)
        return json.dumps(JWKS).encode()

    auth = AuthSpec.model_validate(
        {"issuers": [{"issuer": "hekaton-local", "jwks_uri": "http://127.0.0.1:1/jwks.json"}]}
    )
    mesh = MeshAuth(fetch)
    mesh.set_policies(*([o] for o in policy_objects("models", "iris", auth)))
    assert _check(mesh, _token()) == (None, "")
    assert _check(mesh, _token()) == (None, "")
    assert fetched == ["http://127.0.0.1:1/jwks.json"]


def test_required_claims_are_matched() -> None:
    auth = AuthSpec.model_validate(
        {"issuers": [{"issuer": "hekaton-local", "jwks": JWKS}], "claims": {"groups": ["ml"]}}
    )
    mesh = MeshAuth()
    mesh.set_policies(*([o] for o in policy_objects("models", "iris", auth)))
    assert _check(mesh, _token(groups=["ml", "ops"])) == (None, "")
    assert _check(mesh, _token(groups=["ops"])) == (403, "RBAC: access denied")
