"""The local Google token endpoint: google-auth's real service-account path in, tokens the APIs accept out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from cli.google_tokens import GoogleTokens, NoCredentials
from local.auth_keys import ISSUER, create_keys
from local.google_token_endpoint import JWT_BEARER, GoogleTokenEndpoint, write_service_account_key
from shared.auth.tokens import TokenVerifier, Unauthenticated

URL = "http://127.0.0.1:1/hekaton-status"
EMAIL = "deployer@hekaton.local"


@pytest.fixture()
def endpoint(tmp_path: Path) -> Iterator[GoogleTokenEndpoint]:
    create_keys(tmp_path)
    running = GoogleTokenEndpoint(tmp_path).start()
    try:
        yield running
    finally:
        running.stop()


def test_a_key_file_yields_an_id_token_the_api_verifies_for_its_url(
    endpoint: GoogleTokenEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "sa.json"
    endpoint.register(EMAIL, write_service_account_key(key, EMAIL, endpoint.token_uri, "p"))
    assert key.stat().st_mode & 0o077 == 0  # a private key file: owner only
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))  # google-auth reads it too
    monkeypatch.delenv("HEKATON_TOKEN", raising=False)
    tokens = GoogleTokens()

    token = tokens.token(URL)  # google-auth's fetch_id_token, for real

    verifier = TokenVerifier(ISSUER, (URL,), str(tmp_path / "auth" / "jwks.json"))
    assert verifier.verify(token).name == EMAIL
    with pytest.raises(Unauthenticated, match=r"Audience doesn.t match"):
        TokenVerifier(ISSUER, ("http://elsewhere",), verifier.jwks).verify(token)
    assert endpoint.grants == [{"email": EMAIL, "audience": URL}]
    assert tokens.token(URL) == token and len(endpoint.grants) == 1  # cached for the command


def test_unknown_keys_and_odd_requests_are_refused_as_google_would(
    endpoint: GoogleTokenEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stranger = tmp_path / "stranger.json"
    write_service_account_key(stranger, "stranger@x.com", endpoint.token_uri, "p")  # not registered
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(stranger))
    monkeypatch.delenv("HEKATON_TOKEN", raising=False)
    with pytest.raises(NoCredentials, match=r"GOOGLE_APPLICATION_CREDENTIALS=.*invalid_grant"):
        GoogleTokens().token(URL)
    assert endpoint.grant({"grant_type": ["password"]}) == (
        400,
        {"error": "unsupported_grant_type"},
    )
    # An assertion without target_audience asks for no ID token.
    key_path = tmp_path / "k.json"
    endpoint.register(EMAIL, write_service_account_key(key_path, EMAIL, endpoint.token_uri, "p"))
    private = json.loads(key_path.read_text())["private_key"]
    assertion = jwt.encode(
        {"iss": EMAIL, "aud": "https://oauth2.googleapis.com/token", "iat": 0, "exp": 2**31},
        private,
        algorithm="RS256",
    )
    status, body = endpoint.grant({"grant_type": [JWT_BEARER], "assertion": [assertion]})
    assert (status, body["error"]) == (400, "invalid_request")
    assert endpoint.issued == []
