"""The `auth:` section: field-named errors, and the register-time JWKS check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.auth_spec import check_jwks
from shared.spec import SpecError, parse_spec


def _rsa_jwks() -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}


RSA_JWKS = _rsa_jwks()


def _spec(auth: Any) -> dict[str, Any]:
    return {"name": "iris", "image": "us-docker.pkg.dev/p/r/iris", "auth": auth}


def _errors(auth: Any) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(_spec(auth))
    return str(caught.value)


def test_a_valid_section_parses_with_istio_defaults() -> None:
    spec = parse_spec(_spec({"issuers": [{"issuer": "https://iss", "jwks": RSA_JWKS}]}))
    assert spec.auth is not None
    assert spec.auth.principals == ["*"]
    assert spec.auth.issuers[0].algorithms == ["RS256"]
    assert parse_spec(_spec(None)).auth is None


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (
            {"issuers": [{"issuer": "i", "jwks": RSA_JWKS, "algorithms": ["HS256"]}]},
            "auth.issuers.0.algorithms: Value error, unknown algorithm 'HS256'",
        ),
        ({"issuers": [{"issuer": "i"}]}, "auth.issuers.0: Value error, give exactly one of"),
        (
            {"issuers": [{"issuer": "i", "jwks_uri": "ftp://x"}]},
            "auth.issuers.0.jwks_uri: Value error, must be an http(s) URL",
        ),
        ({"issuers": []}, "auth.issuers: List should have at least 1 item"),
        (
            {"issuers": [{"issuer": "i", "jwks": RSA_JWKS}], "principals": ["i/*@x.com"]},
            "auth.principals: Value error, 'i/*@x.com': Istio matches a principal exactly",
        ),
        (
            {"issuers": [{"issuer": "i", "jwks": {"keys": []}}]},
            "auth.issuers.0.jwks: Value error, expected a JWKS",
        ),
        (
            {"issuers": [{"issuer": "i", "jwks": RSA_JWKS, "algorithms": ["ES256"]}]},
            "auth.issuers.0: Value error, jwks: no signing key usable for ES256",
        ),
        (
            {"issuers": [{"issuer": "i", "jwks": RSA_JWKS}], "claims": {"groups": []}},
            "auth.claims: Value error, groups: give at least one accepted value",
        ),
        (
            {"issuers": [{"issuer": "i", "jwks": RSA_JWKS, "audience": "x"}]},
            "auth.issuers.0.audience: Extra inputs are not permitted",
        ),
    ],
)
def test_bad_sections_are_refused_naming_the_field(auth: Any, expected: str) -> None:
    assert expected in _errors(auth)


def test_an_es256_key_is_usable_for_es256() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    auth = {"issuers": [{"issuer": "i", "jwks": {"keys": [public]}, "algorithms": ["ES256"]}]}
    assert parse_spec(_spec(auth)).auth is not None


def test_register_refuses_an_unreachable_jwks_naming_the_field() -> None:
    def unreachable(uri: str) -> bytes:
        raise OSError("connection refused")

    doc = _spec({"issuers": [{"issuer": "i", "jwks_uri": "http://127.0.0.1:9/jwks.json"}]})
    _, problems = check_jwks(doc, unreachable)
    assert problems == [
        "auth.issuers.0.jwks_uri: cannot fetch the JWKS at http://127.0.0.1:9/jwks.json: "
        "connection refused"
    ]


def test_register_refuses_a_jwks_without_usable_keys() -> None:
    doc = _spec({"issuers": [{"issuer": "i", "jwks_uri": "https://x/jwks"}]})
    _, problems = check_jwks(doc, lambda uri: b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')
    assert problems == [
        "auth.issuers.0.jwks_uri: the JWKS at https://x/jwks has no signing key usable for "
        "RS256 among its 1 key(s)"
    ]
    _, problems = check_jwks(doc, lambda uri: b"<html>")
    assert problems[0].startswith("auth.issuers.0.jwks_uri: https://x/jwks is not a JWKS")


def test_a_jwks_file_is_embedded_and_a_url_kept(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(RSA_JWKS))
    doc = _spec(
        {
            "issuers": [
                {"issuer": "local", "jwks_uri": str(path)},
                {"issuer": "remote", "jwks_uri": "https://x/jwks"},
            ]
        }
    )
    checked, problems = check_jwks(doc, lambda uri: path.read_bytes())
    assert problems == []
    spec = parse_spec(checked)
    assert spec.auth is not None
    local, remote = spec.auth.issuers
    assert (local.jwks_uri, local.jwks) == (None, RSA_JWKS)
    assert (remote.jwks_uri, remote.jwks) == ("https://x/jwks", None)


def test_put_service_refuses_an_unreachable_jwks_and_registers_nothing() -> None:
    from shared.commands import Refused
    from shared.services_admin import put_service
    from tests.fakes import World, iris_spec

    world = World.create()
    auth = {"issuers": [{"issuer": "i", "jwks_uri": "/nonexistent/jwks.json"}]}
    with pytest.raises(Refused) as caught:
        put_service(world.deps, iris_spec(auth=auth), None, principal="ops", key="k1")
    assert "auth.issuers.0.jwks_uri: cannot fetch the JWKS at /nonexistent/jwks.json" in str(
        caught.value
    )
    assert world.store.get_service("iris") is None
