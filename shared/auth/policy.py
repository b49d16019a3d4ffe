"""Who may call the APIs: verified principals matched against the configured patterns."""

from __future__ import annotations

from fnmatch import fnmatchcase

from shared.auth.tokens import Principal
from shared.errors import HekatonError


class Forbidden(HekatonError):
    """A verified caller who is not allowed: HTTP 403."""


def authorize(principal: Principal, allowed: tuple[str, ...]) -> Principal:
    """The principal if one of the `allowed` patterns matches it (case-sensitive fnmatch); else Forbidden."""
    if any(fnmatchcase(principal.name, pattern) for pattern in allowed):
        return principal
    raise Forbidden(f"{principal.name} is not allowed to use this API")
