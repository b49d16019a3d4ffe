"""The service spec's optional endpoint auth (`auth:`): who may call the model API.

It becomes an Istio `RequestAuthentication` (the issuers' JWT rules) and an `AuthorizationPolicy`
(ALLOW only requests whose principal `iss/sub` matches, and with the required claims): a
RequestAuthentication alone lets token-less requests through.

The model is pure (no I/O): `check_jwks` runs at register, fetching each issuer's `jwks_uri`
(bounded timeout) so an unreachable JWKS, or one without a usable key, is refused naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# What Istio (Envoy's jwt_authn) verifies with public keys from a JWKS. HS* would need a shared
# secret published in the JWKS, so it is not offered.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
JWKS_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 64 * 1024
_CLAIM = re.compile(r"^[A-Za-z0-9_.:-]+$")


class JwtIssuer(BaseModel):
    """One trusted token issuer: its `iss`, where its keys are, the audiences it must name."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(min_length=1, max_length=512)
    # An http(s) URL Istio fetches the keys from, or (local stack) an absolute file path, whose
    # JWKS is read at register and embedded as `jwks`.
    jwks_uri: str | None = Field(default=None, min_length=1)
    # An inline JWKS (`{"keys": [...]}`, or its JSON text).
    jwks: dict[str, Any] | None = None
    # The token's `aud` must name one of these; empty: any audience (Istio's default).
    audiences: list[str] = Field(default_factory=list)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"], min_length=1)
    # Keep the Authorization header for the model (Istio strips it by default).
    forward_token: bool = False

    @field_validator("jwks", mode="before")
    @classmethod
    def _jwks_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"is not JSON: {exc}") from None
        return value

    @field_validator("jwks")
    @classmethod
    def _jwks_keys(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            keys = value.get("keys")
            if not isinstance(keys, list) or not keys:
                raise ValueError('expected a JWKS {"keys": [...]} with at least one key')
        return value

    @field_validator("jwks_uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith(("https://", "http://")):
            if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
                raise ValueError("is not a URL")
            return value
        if value.startswith("/"):
            return value
        raise ValueError("must be an http(s) URL, or an absolute file path (local stack)")

    @field_validator("algorithms")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for algorithm in value:
            if algorithm not in ALGORITHMS:
                raise ValueError(
                    f"unknown algorithm {algorithm!r}; Istio verifies {', '.join(ALGORITHMS)}"
                )
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtIssuer:
        if (self.jwks_uri is None) == (self.jwks is None):
            raise ValueError("give exactly one of jwks_uri or jwks")
        if self.jwks is not None:
            problem = usable_keys_problem(self.jwks, self.algorithms)
            if problem:
                raise ValueError(f"jwks: {problem}")
        return self


class AuthSpec(BaseModel):
    """`auth:`: tokens from these issuers, of these principals, with these claims."""

    model_config = ConfigDict(extra="forbid")

    issuers: list[JwtIssuer] = Field(min_length=1, max_length=8)
    # Istio request principals `iss/sub`: exact, `*`, `prefix*` or `*suffix`. Default: any
    # principal with a valid token of one of the issuers.
    principals: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    # Claims every token must carry: name -> accepted values (a list claim must hold one of them).
    claims: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("principals")
    @classmethod
    def _istio_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if (
                not pattern
                or "*" in pattern.strip("*")
                or (pattern.count("*") > 1 and pattern != "*")
            ):
                raise ValueError(
                    f"{pattern!r}: Istio matches a principal exactly, `*`, `prefix*` or `*suffix` "
                    "(one `*`, at either end)"
                )
        return value

    @field_validator("claims")
    @classmethod
    def _claim_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, accepted in value.items():
            if not _CLAIM.match(name):
                raise ValueError(f"{name!r} is not a claim name Istio can match")
            if not accepted:
                raise ValueError(f"{name}: give at least one accepted value")
        return value

    @model_validator(mode="after")
    def _distinct_issuers(self) -> AuthSpec:
        names = [i.issuer for i in self.issuers]
        if len(set(names)) != len(names):
            raise ValueError("issuers: each issuer may appear once")
        return self


def usable_keys_problem(jwks: Any, algorithms: list[str]) -> str | None:
    """Why a JWKS holds no key usable for `algorithms`, or None when it does."""
    import jwt

    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        return 'no keys (expected {"keys": [...]})'
    wanted = {_KEY_TYPES[a[:2]] for a in algorithms}
    usable = 0
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in wanted:
            continue
        if key.get("use", "sig") != "sig" or (key.get("alg") and key["alg"] not in algorithms):
            continue
        try:
            jwt.PyJWK.from_dict(key)
        except jwt.PyJWTError:
            continue
        usable += 1
    if not usable:
        return f"no signing key usable for {', '.join(algorithms)} among its {len(keys)} key(s)"
    return None


FetchJwks = Callable[[str], bytes]


def check_jwks(data: dict[str, Any], fetch: FetchJwks) -> tuple[dict[str, Any], list[str]]:
    """At register: fetch each issuer's `jwks_uri` and check it has usable keys.

    A file path is read and embedded as the issuer's inline `jwks` (Istio takes URLs or inline
    keys only). Returns the spec document (changed only by embedding) and `field: problem` lines.
    """
    auth = data.get("auth")
    issuers = auth.get("issuers") if isinstance(auth, dict) else None
    if not isinstance(issuers, list):
        return data, []
    problems: list[str] = []
    changed: list[Any] = []
    for index, issuer in enumerate(issuers):
        uri = issuer.get("jwks_uri") if isinstance(issuer, dict) else None
        if not isinstance(uri, str) or not uri.startswith(("/", "http://", "https://")):
            changed.append(issuer)
            continue  # the model names what is wrong
        where = f"auth.issuers.{index}.jwks_uri"
        algorithms = issuer.get("algorithms") or ["RS256"]
        try:
            raw = fetch(uri)
        except Exception as exc:  # the fetcher's own errors, reported with the field
            problems.append(f"{where}: cannot fetch the JWKS at {uri}: {exc}")
            changed.append(issuer)
            continue
        try:
            jwks = json.loads(raw)
        except ValueError as exc:
            problems.append(f"{where}: {uri} is not a JWKS (not JSON: {exc})")
            changed.append(issuer)
            continue
        if isinstance(algorithms, list) and all(a in ALGORITHMS for a in algorithms):
            problem = usable_keys_problem(jwks, algorithms)
            if problem:
                problems.append(f"{where}: the JWKS at {uri} has {problem}")
        if uri.startswith("/"):
            issuer = {k: v for k, v in issuer.items() if k != "jwks_uri"} | {"jwks": jwks}
        changed.append(issuer)
    return {**data, "auth": {**auth, "issuers": changed}}, problems  # type: ignore[dict-item]


def fetch_jwks(uri: str, timeout: float = JWKS_TIMEOUT_SECONDS) -> bytes:
    """The bytes at a JWKS URL (bounded time and size) or file path; raises with the reason."""
    if uri.startswith("/"):
        with open(uri, "rb") as handle:
            return handle.read(MAX_JWKS_BYTES + 1)[:MAX_JWKS_BYTES]
    import httpx

    try:
        response = httpx.get(uri, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise OSError(f"HTTP {response.status_code}")
    if len(response.content) > MAX_JWKS_BYTES:
        raise OSError(f"larger than {MAX_JWKS_BYTES} bytes")
    return response.content
