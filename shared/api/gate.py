"""Every API call but /healthz, /openapi.json and the dashboard's page needs a verified, allowed caller."""

from __future__ import annotations

from functools import lru_cache

from shared.api.http import ApiRequest
from shared.auth.policy import authorize
from shared.auth.tokens import Principal, TokenVerifier, bearer_token
from shared.settings import Settings

# /dashboard is the read API's HTML shell only: it holds no data and fetches it with a token.
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/dashboard"})


@lru_cache(maxsize=4)
def _verifier(issuer: str, audiences: tuple[str, ...], jwks: str) -> TokenVerifier:
    return TokenVerifier(issuer, audiences, jwks)


def caller(settings: Settings, request: ApiRequest) -> Principal:
    """The verified, allowed principal (Unauthenticated → 401, Forbidden → 403)."""
    token = bearer_token(request.headers.get("authorization"))
    verifier = _verifier(settings.auth_issuer, settings.auth_audiences, settings.auth_jwks)
    return authorize(verifier.verify(token), settings.allowed_principals)
