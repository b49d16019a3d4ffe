"""Verify a bearer JWT (RS256) against an issuer, audiences and a JWKS: the caller's verified identity."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from shared.errors import HekatonError

LEEWAY_SECONDS = 30  # clock skew tolerated between the token's issuer and us
MAX_TOKEN = 8192  # bytes: a longer Authorization header is refused before parsing


class Unauthenticated(HekatonError):
    """No token, or one that does not verify: HTTP 401, and nothing else is said or done."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token says the caller is (`email` for Google ID tokens, else `sub`)."""

    name: str
    issuer: str
    claims: dict[str, Any] = field(default_factory=dict, compare=False)


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; Unauthenticated when absent or odd."""
    if not authorization:
        raise Unauthenticated("no bearer token (send Authorization: Bearer <token>)")
    if len(authorization) > MAX_TOKEN:
        raise Unauthenticated("the Authorization header is too long")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header is not 'Bearer <token>'")
    return token.strip()


class TokenVerifier:
    """Checks signature (a key of the JWKS), issuer, audience, expiry; returns the Principal."""

    def __init__(self, issuer: str, audiences: tuple[str, ...], jwks: str) -> None:
        self.issuer = issuer
        self.audiences = audiences
        self.jwks = jwks
        self._lock = threading.Lock()
        self._client: jwt.PyJWKClient | None = None
        self._keys: jwt.PyJWKSet | None = None

    def verify(self, token: str) -> Principal:
        """The token's principal; Unauthenticated with the reason when it does not verify."""
        if not self.audiences:
            raise Unauthenticated("this API has no token audience configured; it accepts no calls")
        try:
            key = self._signing_key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=list(self.audiences),
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"token refused: {exc}") from None
        name = claims.get("email") if claims.get("email_verified", True) else None
        name = name or claims.get("sub")
        if not isinstance(name, str) or not name:
            raise Unauthenticated("token names no principal (no email or sub claim)")
        return Principal(name=name, issuer=str(claims["iss"]), claims=claims)

    def _signing_key(self, token: str) -> Any:
        if self.jwks.startswith(("https://", "http://")):
            with self._lock:
                if self._client is None:
                    self._client = jwt.PyJWKClient(self.jwks, cache_keys=True, lifespan=3600)
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        keys = self._file_keys()
        for candidate in keys.keys:
            if candidate.key_id == kid:
                return candidate.key
        raise jwt.InvalidTokenError(f"no key {kid!r} in the JWKS")

    def _file_keys(self) -> jwt.PyJWKSet:
        with self._lock:
            if self._keys is None:
                try:
                    data = json.loads(Path(self.jwks).read_text())
                except (OSError, ValueError) as exc:
                    raise jwt.InvalidTokenError(f"JWKS {self.jwks} unreadable: {exc}") from exc
                self._keys = jwt.PyJWKSet.from_dict(data)
            return self._keys
