"""Saved CLI contexts: named GCP deployments (project, region, optional URL overrides), no secrets.

Stored as JSON in `$HEKATON_CONFIG_DIR` (default `$XDG_CONFIG_HOME/hekaton`, else
`~/.config/hekaton`), file `contexts.json`: `{"current": NAME, "contexts": {NAME: {...}}}`.
Tokens are never stored: each call asks google-auth or gcloud for a fresh one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "contexts.json"
LOCAL = "local"  # the reserved name of the local stack (no entry in the file)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
# GCP project ids: 6-30 characters, lower-case letters, digits, hyphens, starting with a letter.
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_URL = re.compile(r"^https?://\S+$")


class ContextError(RuntimeError):
    """A context is malformed, unknown, or its file is unreadable; the message says which and how."""


@dataclass(frozen=True)
class Context:
    """Where one hekaton deployment lives: its project, region, and (optionally) explicit API URLs."""

    project: str
    region: str | None = None
    status_url: str | None = None
    control_url: str | None = None

    def checked(self) -> Context:
        """This context, or ContextError naming the first bad field."""
        if not _PROJECT.match(self.project):
            raise ContextError(
                f"project {self.project!r} is not a GCP project id "
                "(6-30 lower-case letters, digits or hyphens, starting with a letter)"
            )
        if self.region is not None and not _REGION.match(self.region):
            raise ContextError(f"region {self.region!r} is not a GCP region (e.g. europe-west1)")
        for field, url in (("status_url", self.status_url), ("control_url", self.control_url)):
            if url is not None and not _URL.match(url):
                raise ContextError(f"{field} {url!r} is not an http(s) URL")
        return self


def config_dir() -> Path:
    """The CLI's config folder (`$HEKATON_CONFIG_DIR`, `$XDG_CONFIG_HOME/hekaton`, `~/.config/hekaton`)."""
    explicit = os.environ.get("HEKATON_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hekaton"


class ContextStore:
    """Reads and writes `contexts.json` (atomically: a crash never leaves half a file)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder or config_dir()) / FILE_NAME

    def _load(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"current": None, "contexts": {}}
        except (OSError, ValueError) as exc:
            raise ContextError(
                f"{self.path} is unreadable ({exc}): fix or delete it, then `hekaton context add`"
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("contexts"), dict):
            raise ContextError(f"{self.path} has no 'contexts' object: fix or delete it")
        return data

    def _save(self, data: dict[str, object]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(scratch, self.path)

    def all(self) -> dict[str, Context]:
        """Every saved context by name."""
        contexts = self._load()["contexts"]
        assert isinstance(contexts, dict)
        out = {}
        for name, fields in contexts.items():
            try:
                out[name] = Context(**fields).checked()
            except (TypeError, ContextError) as exc:
                raise ContextError(f"context {name!r} in {self.path} is malformed: {exc}") from exc
        return out

    def current(self) -> str | None:
        """The name `context use` chose, or None (the local stack)."""
        name = self._load().get("current")
        return str(name) if name else None

    def get(self, name: str) -> Context:
        """The context called `name`; ContextError listing the known ones when there is none."""
        contexts = self.all()
        if name not in contexts:
            known = ", ".join(sorted(contexts)) or "none yet"
            raise ContextError(
                f"no context {name!r} (known: {known}); add it with "
                f"`hekaton context add {name} --project P --region R`"
            )
        return contexts[name]

    def add(self, name: str, context: Context) -> bool:
        """Save (or replace) a context; True when it is new."""
        if not _NAME.match(name) or name == LOCAL:
            raise ContextError(
                f"context name {name!r} is not allowed (lower-case letters, digits, '.', '_', '-'; "
                f"{LOCAL!r} is the local stack)"
            )
        context.checked()
        data = self._load()
        contexts = data["contexts"]
        assert isinstance(contexts, dict)
        created = name not in contexts
        contexts[name] = {k: v for k, v in asdict(context).items() if v is not None}
        self._save(data)
        return created

    def use(self, name: str) -> None:
        """Make `name` the current context (`local`: the local stack)."""
        if name != LOCAL:
            self.get(name)
        data = self._load()
        data["current"] = None if name == LOCAL else name
        self._save(data)

    def remove(self, name: str) -> None:
        """Forget a context (the current one falls back to the local stack)."""
        self.get(name)
        data = self._load()
        contexts = data["contexts"]
        assert isinstance(contexts, dict)
        del contexts[name]
        if data.get("current") == name:
            data["current"] = None
        self._save(data)
