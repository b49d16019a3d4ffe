"""At register: would a service's `auth:` section refuse hekaton's own requests?

Validation, the golden-set replay and top-up traffic call the model API with hekaton's own token
(shared/auth/model_tokens.py). A section that does not admit that token would fail every rollout
at validation with a 401/403 nobody expects, so register refuses it, naming the field and saying
what to add. Pure: the settings say which token hekaton sends.
"""

from __future__ import annotations

from typing import Any

from shared.auth.model_tokens import GOOGLE_ISSUER
from shared.auth_spec import AuthSpec
from shared.settings import Settings


def istio_match(pattern: str, value: str) -> bool:
    """Istio's string match: exact, `*` (anything non-empty), `prefix*` or `*suffix`."""
    # The local gateway (local/kube/mesh_auth.py) matches on its own, as Istio does: it stands in
    # for the mesh, so sharing this would let a mistake here agree with itself in the e2e tests.
    if pattern == "*":
        return bool(value)
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _could_match_issuer(pattern: str, issuer: str) -> bool:
    """Whether some principal `issuer/<subject>` matches `pattern` (subject unknown at register)."""
    if pattern == "*" or pattern.startswith("*"):
        return True  # a suffix pattern can always be met by some subject
    prefix = pattern[:-1] if pattern.endswith("*") else pattern
    return prefix.startswith(issuer + "/") or (issuer + "/").startswith(prefix)


def lockout_problems(auth: AuthSpec, settings: Settings) -> list[str]:
    """`field: problem` lines for everything in `auth` that would refuse hekaton's own token."""
    mode = settings.model_token
    if mode == "none":
        return [
            "auth: hekaton's own requests (validation, golden set, top-up) carry no token here "
            "(HEKATON_MODEL_TOKEN=none), so this section would refuse them; deploy hekaton with "
            "HEKATON_MODEL_TOKEN=google (GCP: the functions' service account) or key (local stack)"
        ]
    issuer = GOOGLE_ISSUER if mode == "google" else settings.model_token_issuer
    rule = next((i for i in auth.issuers if i.issuer == issuer), None)
    if rule is None:
        return [
            f"auth.issuers: none is {issuer!r}, the issuer of hekaton's own token, so validation "
            f"would be refused; add `- issuer: {issuer}` with its keys"
            + (
                " (jwks_uri: https://www.googleapis.com/oauth2/v3/certs)"
                if mode == "google"
                else ""
            )
        ]
    if mode == "google":
        # The token's subject is the service account's numeric id, unknown here: refuse only a
        # section that no principal of Google's issuer could pass.
        if not any(_could_match_issuer(p, issuer) for p in auth.principals):
            return [
                f"auth.principals: no pattern admits a principal of {issuer} (hekaton's own "
                f"token); add `{issuer}/<the functions' service account's unique id>`"
            ]
        return []
    subject = settings.model_token_subject
    principal = f"{issuer}/{subject}"
    problems = []
    if not any(istio_match(p, principal) for p in auth.principals):
        problems.append(
            f"auth.principals: none admits {principal!r}, hekaton's own principal, so its "
            f"validation requests would be refused (403); add `{principal}`"
        )
    # What model_tokens mints: these claims, and every audience of the issuer's rule.
    claims: dict[str, Any] = {"iss": issuer, "sub": subject, "email": subject}
    if rule.audiences:
        claims["aud"] = list(rule.audiences)
    for name, accepted in sorted(auth.claims.items()):
        held = claims.get(name)
        values = held if isinstance(held, list) else [] if held is None else [held]
        if not any(str(v) in accepted for v in values):
            problems.append(
                f"auth.claims.{name}: hekaton's own token carries "
                + (f"{name}={held!r}" if held is not None else f"no {name} claim")
                + ", so its validation requests would be refused (403); "
                + (f"add {held!r} to the accepted values" if held is not None else "drop it")
            )
    return problems
