"""Where the CLI's commands point: a GCP deployment (flags, a saved context) or the local stack.

Order: `--project`/`--context` flags; `$HEKATON_PROJECT` (with `$HEKATON_STATUS_URL`/`$HEKATON_CONTROL_URL`);
the current saved context (`hekaton context use`); the running local stack's stack.json.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cli.contexts import Context, ContextError, ContextStore
from cli.google_tokens import GoogleTokens

REPO_ROOT = Path(__file__).resolve().parent.parent


class TargetError(RuntimeError):
    """The CLI cannot tell which hekaton to talk to."""


@dataclass(frozen=True)
class Target:
    """Project, emulator hosts (None in GCP), the read (status) and control endpoints."""

    project: str
    status_url: str | None
    pubsub_emulator_host: str | None = None
    firestore_emulator_host: str | None = None
    control_url: str | None = None
    # The local stack's state folder, whose signing key mints tokens (None: use $HEKATON_TOKEN).
    stack_dir: Path | None = None
    # A GCP deployment: calls carry the user's Google ID token (None: local or $HEKATON_TOKEN).
    google: GoogleTokens | None = field(default=None, compare=False)

    def token(self, audience: str = "") -> str | None:
        """The bearer token: a Google ID token for `audience` (the API's URL) against GCP; else
        $HEKATON_TOKEN, else one minted with the local stack's key (None when there is neither:
        the API then answers 401 and says why). NoCredentials when GCP's sources have none."""
        if self.google is not None:
            return self.google.token(audience)
        given = os.environ.get("HEKATON_TOKEN")
        if given:
            return given.strip()
        folder = self.stack_dir or (None if os.environ.get("HEKATON_PROJECT") else state_dir())
        if folder is None:
            return None
        from local.auth_keys import issue_token  # the local stack's issuer

        try:
            return issue_token(folder)
        except FileNotFoundError:
            return None

    def apply_env(self) -> None:
        """Point the Google client libraries at the emulators (no-op against a real project)."""
        if self.pubsub_emulator_host:
            os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_emulator_host
        if self.firestore_emulator_host:
            os.environ["FIRESTORE_EMULATOR_HOST"] = self.firestore_emulator_host


def state_dir() -> Path:
    """The local stack's state folder (`$HEKATON_STATE_DIR`, default `<repo>/.hekaton`)."""
    return Path(os.environ.get("HEKATON_STATE_DIR") or REPO_ROOT / ".hekaton")


@dataclass(frozen=True)
class Choice:
    """What the global flags asked for (`hekaton --project P --region R --context NAME ...`)."""

    project: str | None = None
    region: str | None = None
    context: str | None = None
    status_url: str | None = None
    control_url: str | None = None


_choice = Choice()


def choose(choice: Choice) -> None:
    """Remember the global flags for every `resolve()` of this command (set once by main)."""
    global _choice
    _choice = choice


def function_url(project: str, region: str, function: str) -> str:
    """A deployed function's 2nd-gen URL (deploy.sh names them `hekaton-<function>`)."""
    return f"https://{region}-{project}.cloudfunctions.net/hekaton-{function}"


def gcp_target(context: Context) -> Target:
    """The Target of a GCP deployment: explicit URLs win, else derived from project and region."""
    context.checked()
    urls = {}
    for api, explicit in (("status", context.status_url), ("control", context.control_url)):
        if explicit:
            urls[api] = explicit
        elif context.region:
            urls[api] = function_url(context.project, context.region, api)
        else:
            raise TargetError(
                f"no region for project {context.project}: pass --region R (where deploy.sh put "
                f"the functions), or --{api}-url URL"
            )
    return Target(
        project=context.project,
        status_url=urls["status"],
        control_url=urls["control"],
        google=GoogleTokens(),
    )


def _chosen_context(choice: Choice, store: ContextStore) -> Context | None:
    """The GCP deployment the flags or the current context name, merged (flags win), or None."""
    name = choice.context
    if name is None and not choice.project and not os.environ.get("HEKATON_PROJECT"):
        name = store.current()
    base = store.get(name) if name and name != "local" else None
    if base is None and not choice.project:
        if any((choice.region, choice.status_url, choice.control_url)):
            raise TargetError("--region/--status-url/--control-url need --project or --context")
        return None
    return Context(
        project=choice.project or (base.project if base else ""),
        region=choice.region or (base.region if base else None),
        status_url=choice.status_url or (base.status_url if base else None),
        control_url=choice.control_url or (base.control_url if base else None),
    )


def resolve() -> Target:
    """The deployment the flags, $HEKATON_PROJECT or the current context name; else the local stack."""
    try:
        chosen = _chosen_context(_choice, ContextStore())
        if chosen is not None:
            return gcp_target(chosen)
    except ContextError as exc:
        raise TargetError(str(exc)) from None
    project = os.environ.get("HEKATON_PROJECT")
    if project:
        return Target(
            project=project,
            status_url=os.environ.get("HEKATON_STATUS_URL"),
            pubsub_emulator_host=os.environ.get("PUBSUB_EMULATOR_HOST"),
            firestore_emulator_host=os.environ.get("FIRESTORE_EMULATOR_HOST"),
            control_url=os.environ.get("HEKATON_CONTROL_URL"),
        )
    path = state_dir() / "stack.json"
    try:
        stack = json.loads(path.read_text())
    except FileNotFoundError:
        raise TargetError(
            f"no local stack is running ({path} not found): start one with `hekaton up --detach`, "
            "or set HEKATON_PROJECT (and HEKATON_STATUS_URL) to use a GCP project"
        ) from None
    except ValueError as exc:
        raise TargetError(
            f"{path} is corrupt ({exc}); run `hekaton down` then `hekaton up --detach`"
        ) from exc
    return Target(
        project=stack["project"],
        status_url=stack.get("status_url"),
        pubsub_emulator_host=stack.get("pubsub_emulator_host"),
        firestore_emulator_host=stack.get("firestore_emulator_host"),
        control_url=stack.get("control_url"),
        stack_dir=path.parent,
    )
