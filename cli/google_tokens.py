"""The user's Google ID token for a deployed API: where it comes from, and what to run when there is none.

Sources, first that applies:
1. `$HEKATON_TOKEN` (a token obtained some other way, e.g. in CI).
2. `$GOOGLE_APPLICATION_CREDENTIALS` (a service-account key or an impersonation config):
   google-auth's `fetch_id_token`, with the API's URL as audience (what Cloud Run checks).
3. `gcloud auth print-identity-token` (a user account of `gcloud auth login`): Google gives a user
   no token for an arbitrary audience, so the token's audience is gcloud's own OAuth client id
   (`GCLOUD_AUDIENCE`); Cloud Run accepts it from an invoker, and deploy.sh lists it among the
   audiences the APIs accept. With `$HEKATON_IMPERSONATE_SERVICE_ACCOUNT=SA`, gcloud prints SA's
   token for the API's URL instead (the user needs `roles/iam.serviceAccountTokenCreator` on SA).
4. The metadata server (on a GCE VM, Cloud Shell, Cloud Run): `fetch_id_token` again. Tried last
   because finding out there is none costs ~2 s.

Tokens are kept in memory until a minute before they expire (`watch` polls several times a second)
and never written, printed or logged.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable

# The audience of the ID tokens `gcloud auth print-identity-token` prints for a user account.
GCLOUD_AUDIENCE = "32555940559.apps.googleusercontent.com"
GCLOUD_TIMEOUT_SECONDS = 30.0
# Impersonate this service account (gcloud, for the API's URL) instead of using the user's token.
IMPERSONATE_ENV = "HEKATON_IMPERSONATE_SERVICE_ACCOUNT"
LOGIN_HINT = (
    "run `gcloud auth login` (a user account), or set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service-account key file"
)

Fetch = Callable[[str], str]  # audience -> ID token (google-auth's fetch_id_token)
# (audience, service account to impersonate or None) -> ID token from gcloud
Gcloud = Callable[[str, str | None], str]


class NoCredentials(RuntimeError):
    """No source could give an ID token; the message says why and what to run."""


def fetch_with_google_auth(audience: str) -> str:
    """google-auth's `fetch_id_token` for `audience` (service-account key or metadata server)."""
    import google.auth.exceptions
    import google.auth.transport.requests
    import google.oauth2.id_token

    try:
        token = google.oauth2.id_token.fetch_id_token(
            google.auth.transport.requests.Request(), audience
        )
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise NoCredentials(f"google-auth found no credentials ({exc})") from None
    except google.auth.exceptions.GoogleAuthError as exc:
        raise NoCredentials(f"google-auth could not get an ID token: {exc}") from None
    return str(token)


def print_identity_token(
    audience: str = "", impersonate: str | None = None, *, executable: str | None = None
) -> str:
    """`gcloud auth print-identity-token` of the active account (the audience is then gcloud's
    own), or of `impersonate` for `audience`; NoCredentials with gcloud's reason."""
    gcloud = executable or shutil.which("gcloud")
    if gcloud is None:
        raise NoCredentials("gcloud is not installed (or not on PATH)")
    argv = [gcloud, "auth", "print-identity-token", "--quiet"]
    if impersonate:
        argv += [f"--impersonate-service-account={impersonate}", f"--audiences={audience}"]
        argv.append("--include-email")
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=GCLOUD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise NoCredentials(
            f"`gcloud auth print-identity-token` did not answer in {GCLOUD_TIMEOUT_SECONDS:.0f}s"
        ) from None
    token = done.stdout.strip()
    if done.returncode != 0 or not token:
        reason = _first_error_line(done.stderr) or f"exit status {done.returncode}, no token"
        raise NoCredentials(f"`gcloud auth print-identity-token` failed: {reason}")
    return token


def _first_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [""])[0][:300]


def expires_at(token: str) -> float:
    """The token's `exp` claim (unverified: only to know when to ask again); 0 when unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return 0.0


class GoogleTokens:
    """Chooses the token source and caches its tokens per audience (see the module docstring).

    `env` (default: the process environment) is what the choice reads; google-auth itself always
    reads the process environment, so only tests with fake sources pass another one.
    """

    def __init__(
        self,
        *,
        fetch: Fetch = fetch_with_google_auth,
        gcloud: Gcloud = print_identity_token,
        env: dict[str, str] | None = None,
        which: Callable[[str], str | None] = shutil.which,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._gcloud = gcloud
        self._env = env
        self._which = which
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self.source = ""  # the last source used, for messages ("service account", "gcloud", ...)

    def token(self, audience: str) -> str:
        """An ID token for `audience` (the API's URL); NoCredentials saying what to run."""
        env = os.environ if self._env is None else self._env
        given = env.get("HEKATON_TOKEN", "").strip()
        if given:
            self.source = "HEKATON_TOKEN"
            return given
        cached = self._cache.get(audience)
        if cached is not None and cached[1] > self._clock() + 60:
            return cached[0]
        token = self._choose(audience, env)
        self._cache[audience] = (token, expires_at(token))
        return token

    def _choose(self, audience: str, env: os._Environ[str] | dict[str, str]) -> str:
        key = env.get("GOOGLE_APPLICATION_CREDENTIALS", "").strip()
        if key:
            self.source = f"GOOGLE_APPLICATION_CREDENTIALS ({key})"
            try:
                return self._fetch(audience)
            except NoCredentials as exc:
                raise NoCredentials(
                    f"no ID token from GOOGLE_APPLICATION_CREDENTIALS={key}: {exc}; point it at a "
                    "service-account key (`gcloud iam service-accounts keys create`), or unset it "
                    "and run `gcloud auth login`"
                ) from None
        problems = []
        impersonate = env.get(IMPERSONATE_ENV, "").strip() or None
        if self._which("gcloud"):
            self.source = "gcloud auth print-identity-token"
            try:
                return self._gcloud(audience, impersonate)
            except NoCredentials as exc:
                problems.append(str(exc))
        else:
            problems.append("gcloud is not installed (or not on PATH)")
        self.source = "metadata server"
        try:
            return self._fetch(audience)
        except NoCredentials as exc:
            problems.append(str(exc))
        raise NoCredentials(f"no Google credentials ({'; '.join(problems)}): {LOGIN_HINT}")
