"""hekaton's own token for model APIs with an `auth:` section, minted with the local key."""

from __future__ import annotations

from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization

from local.kube.mesh_auth import MeshAuth, pod_labels
from shared.auth.model_tokens import ModelTokens
from shared.auth_spec import AuthSpec
from shared.policies import policy_objects
from shared.settings import Settings
from tests.unit.test_mesh_auth import JWKS, KEY

AUTH = AuthSpec.model_validate(
    {
        "issuers": [{"issuer": "hekaton-local", "jwks": JWKS, "audiences": ["iris"]}],
        "principals": ["hekaton-local/hekaton@hekaton.local"],
    }
)


def _settings(tmp_path: Path, **overrides: str) -> Settings:
    key = tmp_path / "signing-key.pem"
    key.write_bytes(
        KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "kid").write_text("k1\n")
    return Settings(project="p", model_token="key", model_token_key=str(key), **overrides)


def test_a_minted_token_passes_the_services_policies(tmp_path: Path) -> None:
    tokens = ModelTokens(_settings(tmp_path))
    headers = tokens.headers(AUTH)
    claims = jwt.decode(headers["Authorization"][7:], options={"verify_signature": False})
    assert (claims["iss"], claims["sub"], claims["aud"]) == (
        "hekaton-local",
        "hekaton@hekaton.local",
        ["iris"],
    )
    assert tokens.headers(AUTH) == headers  # cached
    mesh = MeshAuth()
    mesh.set_policies(*([o] for o in policy_objects("models", "iris", AUTH)))
    verdict = mesh.check(
        "models", pod_labels("iris", "iris-1"), "POST", "/", headers["Authorization"]
    )
    assert verdict.status is None


def test_no_token_for_open_services_or_without_a_matching_issuer(tmp_path: Path) -> None:
    assert ModelTokens(_settings(tmp_path)).headers(None) == {}
    other = ModelTokens(_settings(tmp_path, model_token_issuer="elsewhere"))
    assert other.headers(AUTH) == {}
    assert ModelTokens(Settings(project="p")).headers(AUTH) == {}
