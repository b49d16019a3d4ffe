"""``stack.json``: what a running local stack is, where, and which process groups it owns.

Also the state folder's lock, so two ``up``/``down`` never interleave. The state folder is
``$HEKATON_STATE_DIR`` or ``<repo>/.hekaton``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.components import StackContext
from local.procs import GroupRecord

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_FILE = "stack.json"
KUBECONFIG_FILE = "kubeconfig"
LOCK_WAIT_SECONDS = 60.0


class StackError(RuntimeError):
    """The stack cannot do what was asked; the message says why and what to do."""


class StackBusy(StackError):
    """Another ``up``/``down`` holds the state folder's lock."""


class StateFileError(StackError):
    """stack.json exists but cannot be read."""


def default_state_dir() -> Path:
    """``$HEKATON_STATE_DIR``, else ``<repo>/.hekaton`` (read at call time, so tests can set it)."""
    return Path(os.environ.get("HEKATON_STATE_DIR") or REPO_ROOT / ".hekaton")


@dataclass(frozen=True)
class ComponentRecord:
    """One component as recorded in stack.json."""

    name: str
    group: GroupRecord
    log: str
    url: str | None = None
    startup_seconds: float | None = None
    stop_timeout: float = 5.0

    def to_json(self) -> dict[str, Any]:
        """The stack.json form."""
        return {
            **self.group.to_json(),
            "log": self.log,
            "url": self.url,
            "startup_seconds": self.startup_seconds,
            "stop_timeout": self.stop_timeout,
        }

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> ComponentRecord:
        """Inverse of ``to_json``."""
        seconds = data.get("startup_seconds")
        return cls(
            name=name,
            group=GroupRecord.from_json(data),
            log=str(data.get("log", "")),
            url=data.get("url"),
            startup_seconds=float(seconds) if seconds is not None else None,
            stop_timeout=float(data.get("stop_timeout", 5.0)),
        )


@dataclass(frozen=True)
class StackState:
    """The content of stack.json."""

    run_id: str
    status: str  # "starting", "up" or "stopping"
    project: str
    domain: str
    started_at: str
    state_dir: Path
    components: Mapping[str, ComponentRecord]
    exports: Mapping[str, str] = field(default_factory=dict)
    startup_seconds: Mapping[str, float] = field(default_factory=dict)
    kubeconfig: str | None = None
    supervisor_pid: int | None = None  # the foreground `hekaton up`, if any

    def to_json(self) -> dict[str, Any]:
        """The stack.json document; exports are also flattened to the top level for readers."""
        return {
            "version": 1,
            "run_id": self.run_id,
            "status": self.status,
            "project": self.project,
            "domain": self.domain,
            "started_at": self.started_at,
            **self.exports,
            "kubeconfig": self.kubeconfig,
            "supervisor_pid": self.supervisor_pid,
            "exports": dict(self.exports),
            "components": {name: rec.to_json() for name, rec in self.components.items()},
            "startup_seconds": dict(self.startup_seconds),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], state_dir: Path) -> StackState:
        """Parse a stack.json document; raises KeyError/ValueError/TypeError if malformed."""
        return cls(
            run_id=str(data["run_id"]),
            status=str(data["status"]),
            project=str(data["project"]),
            domain=str(data["domain"]),
            started_at=str(data["started_at"]),
            state_dir=state_dir,
            components={
                name: ComponentRecord.from_json(name, rec)
                for name, rec in data["components"].items()
            },
            exports={str(k): str(v) for k, v in data.get("exports", {}).items()},
            startup_seconds={str(k): float(v) for k, v in data.get("startup_seconds", {}).items()},
            kubeconfig=data.get("kubeconfig"),
            supervisor_pid=data.get("supervisor_pid"),
        )

    def context(self) -> StackContext:
        """The context a component or client of this stack sees."""
        return StackContext(
            project=self.project,
            domain=self.domain,
            state_dir=self.state_dir,
            repo_root=REPO_ROOT,
            exports=self.exports,
            urls={name: rec.url for name, rec in self.components.items() if rec.url},
        )

    def client_env(self) -> dict[str, str]:
        """Environment for a shell, kubectl and the Google client libraries."""
        env = self.context().client_env()
        if self.kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig
        return env

    def running(self) -> dict[str, bool]:
        """Component name -> whether the process we started is still running."""
        return {name: rec.group.leader_running() for name, rec in self.components.items()}

    def is_up(self) -> bool:
        """True if the stack finished starting and every component is still running."""
        return self.status == "up" and bool(self.components) and all(self.running().values())


def state_path(state_dir: Path) -> Path:
    """Where stack.json lives."""
    return state_dir / STATE_FILE


def load_state(state_dir: Path | None = None) -> StackState | None:
    """The recorded stack, or None; StateFileError if stack.json is unreadable."""
    state_dir = state_dir or default_state_dir()
    path = state_path(state_dir)
    try:
        data = json.loads(path.read_text())
        return StackState.from_json(data, state_dir)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateFileError(f"{path} is unreadable ({exc!r})") from exc


def write_state(state: StackState) -> None:
    """Write stack.json atomically (readers never see half a file)."""
    path = state_path(state.state_dir)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(partial, path)


def remove_state(state_dir: Path, run_id: str | None = None) -> None:
    """Remove stack.json (only if it still belongs to ``run_id``, when given) and the kubeconfig."""
    if run_id is not None:
        try:
            current = load_state(state_dir)
        except StateFileError:
            current = None
        if current is not None and current.run_id != run_id:
            return
    state_path(state_dir).unlink(missing_ok=True)
    (state_dir / KUBECONFIG_FILE).unlink(missing_ok=True)


@contextlib.contextmanager
def state_lock(state_dir: Path, *, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Exclusive lock on the state folder, so two ``up``/``down`` never interleave."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "w") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StackBusy(
                        f"another `hekaton up` or `hekaton down` is busy with {state_dir}; "
                        "wait for it to finish"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
