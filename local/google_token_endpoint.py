"""A local stand-in for Google's OAuth token endpoint: service-account keys in, ID tokens out.

google-auth turns a service-account key file into an ID token by POSTing a JWT signed with the
key (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, claim `target_audience`) to the
key file's `token_uri`, and reading `id_token` from the answer. Pointing `token_uri` here makes the
real google-auth code path (`fetch_id_token`) yield a token of the local stack's issuer, with the
requested audience and the key's `client_email`, which the stack's APIs verify as they verify
Google's. Only keys made by `write_service_account_key` (and registered) are honoured.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from local.auth_keys import ISSUER, PRIVATE_KEY, auth_dir

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth addresses its assertion to Google's endpoint whatever the key's token_uri says.
ASSERTION_AUDIENCE = "https://oauth2.googleapis.com/token"
TTL_SECONDS = 3600


def write_service_account_key(path: Path, email: str, token_uri: str, project: str) -> bytes:
    """Write a service-account key file (Google's JSON layout) whose token_uri is ours; returns
    the public key PEM to register with the endpoint. The file is private (0600)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": email,
        "client_id": str(uuid.uuid4().int)[:21],
        "token_uri": token_uri,
    }
    path.touch(mode=0o600)
    path.write_text(json.dumps(info, indent=2))
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class GoogleTokenEndpoint:
    """Serves POST /token on a loopback port; signs ID tokens with the stack's key in `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self._signing_key = (auth_dir(state_dir) / PRIVATE_KEY).read_bytes()
        self._kid = (auth_dir(state_dir) / "kid").read_text().strip()
        self._accounts: dict[str, bytes] = {}
        self.grants: list[dict[str, Any]] = []  # what was asked (audience, email), for tests
        self.issued: list[str] = []  # the tokens handed out (tests check none is ever printed)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def token_uri(self) -> str:
        """The URL to put in a key file's `token_uri`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def register(self, email: str, public_pem: bytes) -> None:
        """Honour assertions signed by this service account's key."""
        self._accounts[email] = public_pem

    def start(self) -> GoogleTokenEndpoint:
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """Answer one token request: (HTTP status, JSON body) as Google's endpoint would."""
        if form.get("grant_type", [""])[0] != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type"}
        assertion = form.get("assertion", [""])[0]
        try:
            email = jwt.decode(assertion, options={"verify_signature": False})["iss"]
            public = self._accounts[email]
            claims = jwt.decode(
                assertion, public, algorithms=["RS256"], audience=ASSERTION_AUDIENCE, leeway=30
            )
        except (KeyError, jwt.PyJWTError) as exc:
            return 400, {"error": "invalid_grant", "error_description": f"bad assertion: {exc}"}
        audience = claims.get("target_audience")
        if not audience:
            return 400, {"error": "invalid_request", "error_description": "no target_audience"}
        self.grants.append({"email": email, "audience": audience})
        now = int(time.time())
        token = jwt.encode(
            {"iss": ISSUER, "aud": audience, "sub": email, "email": email, "email_verified": True,
             "iat": now, "exp": now + TTL_SECONDS},
            self._signing_key, algorithm="RS256", headers={"kid": self._kid},
        )  # fmt: skip
        self.issued.append(token)
        return 200, {"id_token": token}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), 65536)
                form = parse_qs(self.rfile.read(length).decode())
                status, body = endpoint.grant(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the test's output is the assertion

        return Handler


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C, with one service-account key written for `--email`: try the CLI's GCP
    token path against the local stack (`hekaton --project … --status-url … status SERVICE`)."""
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="python -m local.google_token_endpoint")
    default_state = os.environ.get("HEKATON_STATE_DIR") or str(
        Path(__file__).resolve().parents[1] / ".hekaton"
    )
    parser.add_argument("--state-dir", default=default_state, help="the running stack's state")
    parser.add_argument("--email", default="ci-deployer@hekaton.local", help="the key's account")
    parser.add_argument("--key", default="", help="where to write the key (default: state dir)")
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir)
    try:
        endpoint = GoogleTokenEndpoint(state_dir)
    except FileNotFoundError:
        print(f"no stack signing key under {state_dir}: start one with `hekaton up --detach`")
        return 2
    key = Path(args.key) if args.key else auth_dir(state_dir) / "service-account.json"
    endpoint.register(
        args.email, write_service_account_key(key, args.email, endpoint.token_uri, "local")
    )
    endpoint.start()
    print(
        f"export GOOGLE_APPLICATION_CREDENTIALS={key}  # {args.email}, tokens from {endpoint.token_uri}",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        endpoint.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
