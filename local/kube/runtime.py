"""Runs Knative revisions as local processes, one per revision, with Knative's runtime contract.

Each process gets `$PORT` (a free loopback port), `K_SERVICE`, `K_CONFIGURATION` and
`K_REVISION`, the catalog entry's env and the revision's env.  Its output goes to a log file.
One supervisor thread probes `GET /healthz` on pending revisions and watches every process
for exits; failures carry the reasons Knative reports.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from local.kube.catalog import ImageCatalog
from local.kube.contracts import RevisionPhase, RevisionSpec, RevisionState
from local.kube.port_owner import listening_inodes, port_owned_by

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTAINER_HEALTHY = "ContainerHealthy"
RESOURCES_AVAILABLE = "ResourcesAvailable"
# Host variables a Python process needs to start at all; a container gets nothing else of ours.
_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "SYSTEMROOT")
_LOG_TAIL_LINES = 12
_LOG_TAIL_BYTES = 8192
# Restarts on a fresh port when another process took the one a revision was given.
_MAX_PORT_RESTARTS = 3


@dataclass
class _Revision:
    """Bookkeeping for one revision; mutated only under the runtime's lock."""

    spec: RevisionSpec
    state: RevisionState
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    deadline: float = 0.0
    port_restarts: int = 0


class _PortTaken:
    """`_check`'s answer when another process holds the revision's port (start it elsewhere)."""


_PORT_TAKEN = _PortTaken()


class ProcessRuntime:
    """A `RevisionRuntime` that runs each revision's catalog command as a child process."""

    def __init__(
        self,
        catalog: ImageCatalog,
        python: str = sys.executable,
        workdir: Path = REPO_ROOT,
        log_dir: Path | None = None,
        *,
        poll_interval: float = 0.05,
        probe_timeout: float = 0.5,
        stop_grace: float = 2.0,
    ) -> None:
        self._catalog = catalog
        self._python = python
        self._workdir = workdir
        # A folder of our own making goes with the runtime (stop_all); a given one stays.
        self._own_log_dir = log_dir is None
        self._log_dir = log_dir or Path(tempfile.mkdtemp(prefix="hekaton-revisions-"))
        self._poll_interval = poll_interval
        self._probe_timeout = probe_timeout
        self._stop_grace = stop_grace
        self._lock = threading.Lock()
        self._revisions: dict[tuple[str, str], _Revision] = {}
        self._listener: Callable[[str, str], None] | None = None
        self._supervisor: threading.Thread | None = None
        self._wake = threading.Event()

    @property
    def log_dir(self) -> Path:
        """Where each revision's `<namespace>_<revision>.log` is written."""
        return self._log_dir

    def log_path(self, namespace: str, revision: str) -> Path:
        """The log file of one revision (stdout and stderr)."""
        return self._log_dir / f"{namespace}_{revision}.log"

    def set_listener(self, listener: Callable[[str, str], None]) -> None:
        """Call listener(namespace, revision) whenever a revision's state changes."""
        self._listener = listener

    def ensure_running(self, spec: RevisionSpec) -> None:
        """Start the revision unless it is already known (running, ready or failed); idempotent."""
        key = (spec.namespace, spec.revision)
        with self._lock:
            if key in self._revisions:
                return
            revision = self._start(spec)
            self._revisions[key] = revision
            if revision.process is not None:
                self._ensure_supervisor()
        self._notify(key)

    def state(self, namespace: str, revision: str) -> RevisionState | None:
        """Current state, or None if the runtime has never heard of this revision."""
        with self._lock:
            entry = self._revisions.get((namespace, revision))
            return entry.state if entry else None

    def pid(self, namespace: str, revision: str) -> int | None:
        """The process id of the revision's latest process, even once exited (for diagnostics)."""
        with self._lock:
            entry = self._revisions.get((namespace, revision))
            return entry.process.pid if entry and entry.process else None

    def stop(self, namespace: str, revision: str) -> None:
        """Stop the revision's process and forget it; idempotent; the listener is not called."""
        with self._lock:
            entry = self._revisions.pop((namespace, revision), None)
        if entry and entry.process:
            _terminate([entry.process], self._stop_grace)

    def stop_all(self) -> None:
        """Stop every process (SIGTERM together, SIGKILL after the grace) and the supervisor."""
        with self._lock:
            entries = list(self._revisions.values())
            self._revisions.clear()
            supervisor = self._supervisor
        _terminate([e.process for e in entries if e.process], self._stop_grace)
        if self._own_log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)
        self._wake.set()
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(timeout=5)

    # -- starting -------------------------------------------------------------------------

    def _start(self, spec: RevisionSpec) -> _Revision:
        log_path = self.log_path(spec.namespace, spec.revision)
        entry = self._catalog.resolve(spec.image)
        if entry is None:
            return _Revision(
                spec=spec,
                log_path=log_path,
                state=_failed(
                    "ContainerMissing",
                    f'Unable to fetch image "{spec.image}": not found in the local image '
                    f"catalog {self._catalog.origin}; use a tag or digest listed there",
                    CONTAINER_HEALTHY,
                ),
            )
        port = _free_port(exclude={r.state.port for r in self._revisions.values()})
        env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
        env["PYTHONUNBUFFERED"] = "1"  # so the log shows output before a crash
        env.update(entry.env)
        env.update(spec.env)
        # Knative reserves these; they win over anything the user set.
        env.update(
            PORT=str(port),
            K_SERVICE=spec.service,
            K_CONFIGURATION=spec.service,
            K_REVISION=spec.revision,
        )
        self._log_dir.mkdir(parents=True, exist_ok=True)
        try:
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    entry.argv(self._python),
                    cwd=self._workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
        except OSError as exc:
            # What a container runtime reports when the entrypoint cannot be executed.
            return _Revision(
                spec=spec,
                log_path=log_path,
                state=_failed(
                    "ExitCode127",
                    f"cannot start {entry.argv(self._python)}: {exc}",
                    CONTAINER_HEALTHY,
                ),
            )
        log.info(
            "revision %s/%s started as pid %d on port %d",
            spec.namespace,
            spec.revision,
            process.pid,
            port,
        )
        return _Revision(
            spec=spec,
            log_path=log_path,
            process=process,
            deadline=time.monotonic() + spec.progress_deadline_seconds,
            state=RevisionState(phase=RevisionPhase.PENDING, port=port),
        )

    # -- supervising ----------------------------------------------------------------------

    def _ensure_supervisor(self) -> None:
        """Start the supervisor if none runs; caller holds the lock."""
        if self._supervisor is None:
            self._wake.clear()
            self._supervisor = threading.Thread(
                target=self._supervise, name="revision-supervisor", daemon=True
            )
            self._supervisor.start()

    def _supervise(self) -> None:
        """Probe pending revisions and watch for exits until nothing is left to watch."""
        while True:
            with self._lock:
                watched = [
                    (key, rev)
                    for key, rev in self._revisions.items()
                    if rev.process is not None and rev.state.phase is not RevisionPhase.FAILED
                ]
                if not watched:
                    self._supervisor = None
                    return
            for key, rev in watched:
                try:
                    new_state = self._check(rev)
                except Exception:  # the supervisor must outlive any one revision's surprise
                    log.exception("checking revision %s/%s failed", *key)
                    continue
                if isinstance(new_state, _PortTaken):
                    self._restart_elsewhere(key, rev)
                elif new_state is not None and self._transition(key, rev, new_state):
                    self._notify(key)
            if self._wake.wait(self._poll_interval):
                self._wake.clear()

    def _check(self, rev: _Revision) -> RevisionState | _PortTaken | None:
        """The revision's next state if it changed, `_PORT_TAKEN`, or None."""
        assert rev.process is not None
        code = rev.process.poll()
        port, restartable = rev.state.port, rev.port_restarts < _MAX_PORT_RESTARTS
        died_starting = code is not None and rev.state.phase is RevisionPhase.PENDING
        if died_starting and restartable and port is not None and listening_inodes(port):
            return _PORT_TAKEN  # it most likely died binding a port someone else listens on
        if code is not None:
            # Kubernetes reports death by signal N as exit code 128 + N.
            exit_code = code if code >= 0 else 128 - code
            return _failed(
                f"ExitCode{exit_code}",
                f"Container failed with exit code {exit_code}; last log lines:\n"
                + _log_tail(rev.log_path),
                CONTAINER_HEALTHY,
                port=rev.state.port,
            )
        if rev.state.phase is RevisionPhase.READY:
            return None
        if port is not None and self._probe(port):
            if port_owned_by(port, rev.process.pid) is not False:
                return replace(rev.state, phase=RevisionPhase.READY)
            # Another process answers on this port: never route users to it.
            if restartable:
                return _PORT_TAKEN
        if time.monotonic() > rev.deadline:
            rev.process.kill()
            rev.process.wait(timeout=5)
            return _failed(
                "ProgressDeadlineExceeded",
                f"Initial scale was never achieved: GET /healthz did not answer 200 within "
                f"{rev.spec.progress_deadline_seconds:g}s",
                RESOURCES_AVAILABLE,
                port=rev.state.port,
            )
        return None

    def _restart_elsewhere(self, key: tuple[str, str], rev: _Revision) -> None:
        """Start the revision again on a fresh port; its old process goes."""
        with self._lock:
            if self._revisions.get(key) is not rev:
                return  # stopped meanwhile
            fresh = self._start(rev.spec)
            fresh.port_restarts = rev.port_restarts + 1
            self._revisions[key] = fresh
        log.warning(
            "revision %s/%s: another process listens on port %s; started again on port %s",
            *key,
            rev.state.port,
            fresh.state.port,
        )
        if rev.process is not None:
            _terminate([rev.process], 0.0)
        self._notify(key)

    def _transition(self, key: tuple[str, str], rev: _Revision, new_state: RevisionState) -> bool:
        """Record a new state unless the revision was stopped meanwhile."""
        with self._lock:
            if self._revisions.get(key) is not rev:
                return False
            rev.state = new_state
        return True

    def _probe(self, port: int) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=self._probe_timeout)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _notify(self, key: tuple[str, str]) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            listener(*key)
        except Exception:  # a listener's bug must not stop supervision
            log.exception("revision state listener failed for %s/%s", *key)


def _failed(reason: str, message: str, condition: str, port: int | None = None) -> RevisionState:
    return RevisionState(
        phase=RevisionPhase.FAILED, reason=reason, message=message, condition=condition, port=port
    )


def _free_port(exclude: set[int | None]) -> int:
    """A loopback port nobody listens on now and not promised to another revision."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in exclude:
            return port
    raise RuntimeError("no free loopback port found in 20 attempts")


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - _LOG_TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(log unavailable: {exc})"
    lines = text.splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else "(no output)"


def _terminate(processes: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM every process, SIGKILL whatever still runs after `grace`, and reap them all."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
