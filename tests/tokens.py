"""Tokens for tests: a throw-away issuer (the local stack's, in a temp folder) and Settings for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.auth_keys import ALLOWED, AUDIENCE, ISSUER, create_keys, issue_token


@dataclass(frozen=True)
class Issuer:
    """A signing key and the settings that make the APIs trust it."""

    folder: Path

    @classmethod
    def create(cls, folder: Path) -> Issuer:
        """Make the key (in `folder`)."""
        create_keys(folder)
        return cls(folder)

    def settings(self) -> dict[str, Any]:
        """Settings overrides: this issuer, its JWKS, the local audience, `*@hekaton.local`."""
        return {
            "auth_issuer": ISSUER,
            "auth_jwks": str(self.folder / "auth" / "jwks.json"),
            "auth_audiences": (AUDIENCE,),
            "allowed_principals": (ALLOWED,),
        }

    def token(self, principal: str = "ann@hekaton.local", **options: Any) -> str:
        """A token for `principal`."""
        return issue_token(self.folder, principal, **options)

    def headers(self, principal: str = "ann@hekaton.local") -> dict[str, str]:
        """The Authorization header (lower-cased, as ApiRequest keeps headers)."""
        return {"authorization": f"Bearer {self.token(principal)}"}
