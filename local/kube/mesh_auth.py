"""Istio's request authentication and authorization, enforced by the local gateway.

Follows the `security.istio.io` objects in the API server (a `PolicyWatcher`) and, for each request
routed to a revision, does what the revision's sidecar would (Envoy's jwt_authn and RBAC filters):

- RequestAuthentication: a bearer token whose issuer has a JWT rule must verify (signature with a
  key of the rule's JWKS, expiry and not-before with 60 s of skew, audience when the rule names
  some): otherwise **401**. No token, or one of an issuer no rule names, passes with no principal.
  A verified token's principal is `iss/sub`; the Authorization header is not forwarded unless the
  rule says `forwardOriginalToken`.
- AuthorizationPolicy: a matching DENY rule, or ALLOW policies none of which match, is **403**
  `RBAC: access denied` (so a request without a token meets 403 when a principal is required).

Supported: `selector.matchLabels` (none: the whole namespace), `jwtRules` (`issuer`, `jwksUri` (http
URL or file path, cached), `jwks`, `audiences`, `forwardOriginalToken`), rules with
`from.source.requestPrincipals`/`notRequestPrincipals`, `to.operation.methods`/`paths` and
`when` on `request.auth.claims[NAME]`, `request.auth.principal`, `request.auth.audiences`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from local.kube import store as storage
from local.kube.event_pump import EventPump

log = logging.getLogger(__name__)

Obj = dict[str, Any]
RA_KEY = "requestauthentications.security.istio.io"
AP_KEY = "authorizationpolicies.security.istio.io"
CLOCK_SKEW_SECONDS = 60  # Envoy jwt_authn's default
JWKS_CACHE_SECONDS = 300
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


@dataclass(frozen=True)
class Verdict:
    """What the sidecar decides: `status` None lets the request through."""

    status: int | None = None
    message: str = ""
    principal: str | None = None
    strip_authorization: bool = False


@dataclass(frozen=True)
class _Identity:
    principal: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    strip: bool = False


def pod_labels(service: str, revision: str) -> dict[str, str]:
    """The labels Knative puts on a revision's pods (what policy selectors match)."""
    return {
        "serving.knative.dev/service": service,
        "serving.knative.dev/configuration": service,
        "serving.knative.dev/revision": revision,
    }


class MeshAuth:
    """The policies in force, swapped whole on each change, and the check of one request."""

    def __init__(self, fetch: Callable[[str], bytes] | None = None) -> None:
        self._fetch = fetch or _fetch
        self._lock = threading.Lock()
        self._authn: list[Obj] = []
        self._authz: list[Obj] = []
        self._jwks: dict[str, tuple[float, jwt.PyJWKSet]] = {}

    def set_policies(self, authn: list[Obj], authz: list[Obj]) -> None:
        """Replace every RequestAuthentication and AuthorizationPolicy."""
        with self._lock:
            self._authn, self._authz = list(authn), list(authz)

    def check(
        self,
        namespace: str,
        labels: Mapping[str, str],
        method: str,
        path: str,
        authorization: str | None,
    ) -> Verdict:
        """The verdict for one request to a workload with `labels` in `namespace`."""
        with self._lock:
            authn = [p for p in self._authn if _applies(p, namespace, labels)]
            authz = [p for p in self._authz if _applies(p, namespace, labels)]
        if not authn and not authz:
            return Verdict()
        rules = [r for p in authn for r in (p.get("spec") or {}).get("jwtRules") or []]
        identity = _Identity()
        token = _bearer(authorization)
        if token is not None and rules:
            found = self._authenticate(token, rules)
            if isinstance(found, Verdict):
                return found
            identity = found
        request = {"method": method, "path": path.split("?", 1)[0]}
        for policy in authz:
            spec = policy.get("spec") or {}
            if spec.get("action") == "DENY" and any(
                _rule_matches(r, identity, request) for r in spec.get("rules") or []
            ):
                return Verdict(403, "RBAC: access denied", identity.principal)
        allows = [
            p.get("spec") or {}
            for p in authz
            if (p.get("spec") or {}).get("action", "ALLOW") == "ALLOW"
        ]
        if allows and not any(
            _rule_matches(r, identity, request) for s in allows for r in s.get("rules") or []
        ):
            return Verdict(403, "RBAC: access denied", identity.principal)
        return Verdict(None, "", identity.principal, identity.strip)

    def _authenticate(self, token: str, rules: list[Obj]) -> _Identity | Verdict:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return Verdict(401, "Jwt is not in the form of Header.Payload.Signature")
        issuer = unverified.get("iss")
        matching = [r for r in rules if r.get("issuer") == issuer]
        if not matching:
            return _Identity()  # Envoy ignores a token of an issuer it has no rule for
        problem = "Jwt verification fails"
        for rule in matching:
            try:
                keys = self._keys(rule)
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                log.warning("JWKS for issuer %s unusable: %s", issuer, exc)
                problem = "Jwks remote fetch is failed"
                continue
            candidates = [k for k in keys.keys if header.get("kid") in (None, k.key_id)]
            if not candidates:
                problem = "Jwks doesn't have key to match kid or alg from Jwt"
                continue
            for key in candidates:
                try:
                    claims = jwt.decode(
                        token,
                        key.key,
                        algorithms=_ALGORITHMS,
                        options={"verify_aud": False},
                        leeway=CLOCK_SKEW_SECONDS,
                    )
                except jwt.ExpiredSignatureError:
                    return Verdict(401, "Jwt is expired")
                except jwt.ImmatureSignatureError:
                    return Verdict(401, "Jwt not yet valid")
                except jwt.PyJWTError:
                    continue
                audiences = rule.get("audiences") or []
                given = claims.get("aud")
                given = [given] if isinstance(given, str) else list(given or [])
                if audiences and not set(audiences) & set(given):
                    return Verdict(401, "Audiences in Jwt are not allowed")
                subject = claims.get("sub")
                return _Identity(
                    principal=f"{issuer}/{subject}",
                    claims=claims,
                    strip=not rule.get("forwardOriginalToken", False),
                )
        return Verdict(401, problem)

    def _keys(self, rule: Obj) -> jwt.PyJWKSet:
        inline = rule.get("jwks")
        if inline:
            return jwt.PyJWKSet.from_dict(json.loads(inline))
        uri = str(rule.get("jwksUri") or "")
        now = time.monotonic()
        with self._lock:
            cached = self._jwks.get(uri)
        if cached is not None and cached[0] > now:
            return cached[1]
        keys = jwt.PyJWKSet.from_dict(json.loads(self._fetch(uri)))
        with self._lock:
            self._jwks[uri] = (now + JWKS_CACHE_SECONDS, keys)
        return keys


def _fetch(uri: str) -> bytes:
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if uri.startswith("/"):
        return Path(uri).read_bytes()
    with urllib.request.urlopen(uri, timeout=3) as response:
        return bytes(response.read(1 << 20))


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _applies(policy: Obj, namespace: str, labels: Mapping[str, str]) -> bool:
    if (policy.get("metadata") or {}).get("namespace") != namespace:
        return False
    selector = ((policy.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _pattern(pattern: str, value: str | None) -> bool:
    if value is None:
        return False
    if pattern == "*":
        return bool(value)
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _rule_matches(rule: Obj, identity: _Identity, request: Mapping[str, str]) -> bool:
    sources = [s.get("source") or {} for s in rule.get("from") or []]
    if sources and not any(_source_matches(s, identity) for s in sources):
        return False
    operations = [o.get("operation") or {} for o in rule.get("to") or []]
    if operations and not any(_operation_matches(o, request) for o in operations):
        return False
    return all(_condition_holds(c, identity) for c in rule.get("when") or [])


def _source_matches(source: Obj, identity: _Identity) -> bool:
    allowed = source.get("requestPrincipals")
    if allowed is not None and not any(_pattern(p, identity.principal) for p in allowed):
        return False
    refused = source.get("notRequestPrincipals")
    return not (refused is not None and any(_pattern(p, identity.principal) for p in refused))


def _operation_matches(operation: Obj, request: Mapping[str, str]) -> bool:
    methods, paths = operation.get("methods"), operation.get("paths")
    if methods is not None and request["method"] not in methods:
        return False
    return not (paths is not None and not any(_pattern(p, request["path"]) for p in paths))


def _condition_holds(condition: Obj, identity: _Identity) -> bool:
    key, values = str(condition.get("key") or ""), list(condition.get("values") or [])
    if key == "request.auth.principal":
        actual: list[str] = [identity.principal] if identity.principal else []
    elif key == "request.auth.audiences":
        aud = identity.claims.get("aud")
        actual = [aud] if isinstance(aud, str) else [str(a) for a in aud or []]
    elif key.startswith("request.auth.claims[") and key.endswith("]"):
        claim = identity.claims.get(key[len("request.auth.claims[") : -1])
        actual = (
            [str(c) for c in claim]
            if isinstance(claim, list)
            else []
            if claim is None
            else [str(claim).lower() if isinstance(claim, bool) else str(claim)]
        )
    else:
        return False  # a condition this gateway does not know never holds (fail closed)
    return any(_pattern(v, a) for v in values for a in actual)


class PolicyWatcher:
    """Feeds the API server's Istio security objects to a MeshAuth as they change."""

    def __init__(self, store: storage.Store, auth: MeshAuth) -> None:
        self._store = store
        self._auth = auth
        self._pump = EventPump(store, "istio-policies", self._on_event, self._resync)

    def start(self) -> None:
        """Load the current policies and follow changes."""
        self._pump.start()

    def stop(self) -> None:
        """Stop following."""
        self._pump.stop()

    def _on_event(self, event: storage.Event) -> None:
        if event.key in (RA_KEY, AP_KEY):
            self._resync()

    def _resync(self) -> None:
        authn, _ = self._store.list_objects(RA_KEY, None)
        authz, _ = self._store.list_objects(AP_KEY, None)
        self._auth.set_policies(authn, authz)
