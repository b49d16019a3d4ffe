"""The token hekaton's own requests to a model API carry, when its spec has an `auth:` section.

`none`: no token. `google`: a Google ID token of the function's service account, for the first
audience of the spec's `https://accounts.google.com` issuer. `key` (local stack): an RS256 token
minted with `model_token_key` (its `kid` file beside it), issuer `model_token_issuer`, subject and
email `model_token_subject`, for the audiences of the spec's issuer of that name. Tokens are
cached until a minute before they expire.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from shared.auth_spec import AuthSpec
from shared.settings import Settings

GOOGLE_ISSUER = "https://accounts.google.com"
TTL_SECONDS = 600


class ModelTokens:
    """`headers(auth)`: the Authorization header for a service's auth section, or none."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], tuple[float, str]] = {}

    def headers(self, auth: AuthSpec | None) -> dict[str, str]:
        """`{"Authorization": "Bearer …"}`, or {} when the service is open or no token is set up."""
        mode = self._settings.model_token
        if auth is None or mode == "none":
            return {}
        issuer = GOOGLE_ISSUER if mode == "google" else self._settings.model_token_issuer
        rule = next((i for i in auth.issuers if i.issuer == issuer), None)
        if rule is None:
            return {}  # the service trusts no issuer hekaton can get a token from
        audiences = tuple(rule.audiences)
        with self._lock:
            cached = self._cache.get(audiences)
        if cached is not None and cached[0] > time.time() + 60:
            return {"Authorization": f"Bearer {cached[1]}"}
        token, expires = self._google(audiences) if mode == "google" else self._minted(audiences)
        with self._lock:
            self._cache[audiences] = (expires, token)
        return {"Authorization": f"Bearer {token}"}

    def _minted(self, audiences: tuple[str, ...]) -> tuple[str, float]:
        import jwt

        path = Path(self._settings.model_token_key or "")
        kid_file = path.parent / "kid"
        headers = {"kid": kid_file.read_text().strip()} if kid_file.exists() else None
        now = int(time.time())
        subject = self._settings.model_token_subject
        claims: dict[str, object] = {
            "iss": self._settings.model_token_issuer,
            "sub": subject,
            "email": subject,
            "iat": now,
            "exp": now + TTL_SECONDS,
        }
        if audiences:
            claims["aud"] = list(audiences)
        token = jwt.encode(claims, path.read_bytes(), algorithm="RS256", headers=headers)
        return token, now + TTL_SECONDS

    def _google(self, audiences: tuple[str, ...]) -> tuple[str, float]:
        import google.auth.transport.requests
        import google.oauth2.id_token

        audience = audiences[0] if audiences else GOOGLE_ISSUER
        request = google.auth.transport.requests.Request()
        token = google.oauth2.id_token.fetch_id_token(request, audience)
        return str(token), time.time() + 3000  # Google ID tokens last an hour
