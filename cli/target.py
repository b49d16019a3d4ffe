"""Where the CLI's commands point: the local stack's stack.json, or explicit settings for a real project."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

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

    def token(self) -> str | None:
        """The bearer token: $HEKATON_TOKEN, else one minted with the local stack's key (None when
        there is neither: the API then answers 401 and says why)."""
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


def resolve() -> Target:
    """Use HEKATON_PROJECT/HEKATON_STATUS_URL when set, else the running local stack."""
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
