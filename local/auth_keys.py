"""The local stack's token issuer: a signing key made at `hekaton up`, its JWKS, and tokens for curl.

The functions verify tokens exactly as in GCP (RS256 against a JWKS, issuer, audience); only the
issuer differs: here it is this key in the state folder (`<state>/auth/`), there Google.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "hekaton-local"
AUDIENCE = "hekaton-local"
DOMAIN = "hekaton.local"  # local principals are <name>@hekaton.local
ALLOWED = f"*@{DOMAIN}"
PRIVATE_KEY = "signing-key.pem"
JWKS = "jwks.json"
DEFAULT_TTL_SECONDS = 3600


def auth_dir(state_dir: Path) -> Path:
    """Where the key and the JWKS live."""
    return state_dir / "auth"


def create_keys(state_dir: Path) -> Path:
    """A fresh RSA signing key (private, mode 0600) and its public JWKS; returns the JWKS path."""
    folder = auth_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex[:16]
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private = folder / PRIVATE_KEY
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid=kid, use="sig", alg="RS256")
    (folder / JWKS).write_text(json.dumps({"keys": [public]}, indent=2) + "\n")
    (folder / "kid").write_text(kid)
    return folder / JWKS


def default_principal() -> str:
    """`$USER@hekaton.local`."""
    return f"{os.environ.get('USER') or 'operator'}@{DOMAIN}"


def issue_token(
    state_dir: Path, principal: str | None = None, *, ttl_seconds: int = DEFAULT_TTL_SECONDS
) -> str:
    """A token the local stack's functions accept, for `principal` (default `$USER@hekaton.local`)."""
    folder = auth_dir(state_dir)
    try:
        pem = (folder / PRIVATE_KEY).read_bytes()
        kid = (folder / "kid").read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no signing key in {folder}: start the local stack with `hekaton up --detach`"
        ) from None
    now = int(time.time())
    name = principal or default_principal()
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": name,
        "email": name,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})
