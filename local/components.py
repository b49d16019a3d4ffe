"""What a stack component is, and how one is started and judged healthy.

A ``Component`` is data plus three callables: ``check`` (is everything it needs installed?),
``launch`` (argv/env/cwd, choosing fresh ports on each call) and ``probe`` (is it ready, and
where is it?). ``start_component`` runs one to readiness; ``local.stack`` runs many in parallel.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from local.procs import ManagedProcess, group_listens_on, spawn, tail

_POLL_SECONDS = 0.05
_HTTP_TIMEOUT = 1.0


def http_get(url: str, *, timeout: float = _HTTP_TIMEOUT) -> tuple[int, bytes] | None:
    """GET a plain-http URL; (status, body), or None if nothing answers (yet)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not a plain http URL: {url!r}")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if it loses the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class MissingComponent(RuntimeError):
    """A part the stack needs is not installed; the message says which and how to install it."""

    def __init__(self, what: str, detail: str, install_hint: str) -> None:
        self.what = what
        self.install_hint = install_hint
        super().__init__(f"{what} is not available: {detail}. {install_hint}")


class PortConflict(RuntimeError):
    """The component could not bind its port because another process holds it."""


class ComponentFailed(RuntimeError):
    """A component exited or did not become healthy in time."""

    def __init__(self, name: str, reason: str, log_path: Path | None) -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        super().__init__(f"{name}: {reason}")

    def log_tail(self, lines: int = 20) -> str:
        """The end of the component's log, for error reports."""
        return tail(self.log_path, lines) if self.log_path else ""


class StartCancelled(RuntimeError):
    """Start-up was abandoned (another component failed, or the user pressed Ctrl-C)."""


@dataclass(frozen=True)
class StackContext:
    """What a component may know when it is launched: settings and what is already up."""

    project: str
    domain: str
    state_dir: Path
    repo_root: Path
    # Values published by components already healthy (stack.json top-level keys).
    exports: Mapping[str, str] = field(default_factory=dict)
    urls: Mapping[str, str] = field(default_factory=dict)  # component name -> its URL

    def client_env(self) -> dict[str, str]:
        """Environment that points Google client libraries at the running emulators."""
        env = {"GOOGLE_CLOUD_PROJECT": self.project, "CLOUDSDK_CORE_PROJECT": self.project}
        if "pubsub_emulator_host" in self.exports:
            env["PUBSUB_EMULATOR_HOST"] = self.exports["pubsub_emulator_host"]
        if "firestore_emulator_host" in self.exports:
            env["FIRESTORE_EMULATOR_HOST"] = self.exports["firestore_emulator_host"]
        if "kube_server" in self.exports:
            env["HEKATON_KUBE_SERVER"] = self.exports["kube_server"]
        if "gateway_url" in self.exports:
            env["HEKATON_GATEWAY_URL"] = self.exports["gateway_url"]
        if "prometheus_url" in self.exports:
            env["HEKATON_PROMETHEUS_URL"] = self.exports["prometheus_url"]
        if "tasks_emulator_host" in self.exports:
            env["HEKATON_TASKS_EMULATOR_HOST"] = self.exports["tasks_emulator_host"]
            env["HEKATON_TASKS_QUEUE"] = self.exports["tasks_queue"]
        return env


@dataclass(frozen=True)
class Launch:
    """One concrete way to start a component: the command, and what the probe needs to know."""

    argv: tuple[str, ...]
    env: Mapping[str, str]  # the complete environment of the child
    cwd: Path | None = None
    port: int | None = None
    facts: Mapping[str, str] = field(default_factory=dict)  # e.g. the ready-file path


@dataclass(frozen=True)
class Ready:
    """A healthy component: its main URL and the stack.json keys it provides."""

    url: str
    exports: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Component:
    """One process of the local stack."""

    name: str
    launch: Callable[[StackContext], Launch]
    # Returns Ready once healthy, None while not yet; raises PortConflict or ComponentFailed.
    probe: Callable[[Launch, ManagedProcess], Ready | None]
    check: Callable[[], None] | None = None  # raises MissingComponent
    timeout: float = 60.0
    attempts: int = 1  # > 1 only when launch() picks a fresh port each time
    stop_timeout: float = 5.0


# Java and Python say "Address already in use"; Go servers (Prometheus) "bind: address already in use".
_BIND_FAILURES = ("Address already in use", "address already in use", "BindException", "EADDRINUSE")


def http_server_component(
    name: str,
    command: Callable[[int, StackContext], Sequence[str]],
    *,
    env: Callable[[StackContext], Mapping[str, str]] | None = None,
    cwd: Path | None = None,
    health_path: str = "/",
    accept: Callable[[int, bytes], bool] | None = None,
    exports: Callable[[str], Mapping[str, str]] | None = None,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    url_env: Callable[[StackContext, str], Mapping[str, str]] | None = None,
) -> Component:
    """A component that serves HTTP on a port we choose (e.g. one functions-framework process).

    ``command(port, ctx)`` builds the argv; ``env(ctx)`` adds variables to ours (for example
    ``ctx.client_env()``). Healthy = a process of its group listens on the port and
    ``GET health_path`` gets a response ``accept(status, body)`` likes (any status by default:
    a function that only takes POST still proves it is serving). ``exports(url)`` names the
    stack.json keys it publishes. ``url_env(ctx, url)`` adds variables that need the server's own
    URL (an API accepting tokens for its URL). A lost race for the port is retried on a fresh one.
    """

    def launch(ctx: StackContext) -> Launch:
        port = free_port(host)
        full_env = {**os.environ, **(env(ctx) if env else {})}
        if url_env is not None:
            full_env.update(url_env(ctx, f"http://{host}:{port}"))
        return Launch(argv=tuple(command(port, ctx)), env=full_env, cwd=cwd, port=port)

    def probe(launch: Launch, process: ManagedProcess) -> Ready | None:
        assert launch.port is not None
        if any(marker in process.recent_output() for marker in _BIND_FAILURES):
            raise PortConflict(f"port {launch.port} is already in use by another process")
        if not group_listens_on(process.pgid, launch.port):
            return None
        url = f"http://{host}:{launch.port}"
        answer = http_get(url + health_path)
        if answer is None or (accept is not None and not accept(*answer)):
            return None
        return Ready(url=url, exports=exports(url) if exports else {})

    return Component(name=name, launch=launch, probe=probe, timeout=timeout, attempts=3)


@dataclass
class RunningComponent:
    """A component started by us and found healthy."""

    name: str
    process: ManagedProcess
    launch: Launch
    ready: Ready
    startup_seconds: float


def start_component(
    component: Component,
    ctx: StackContext,
    log_path: Path,
    *,
    cancel: threading.Event | None = None,
    on_spawn: Callable[[ManagedProcess], None] | None = None,
) -> RunningComponent:
    """Start ``component`` and wait until its probe says ready, or raise ComponentFailed.

    On any failure the component's process group is stopped before raising. ``on_spawn`` is
    told about each process as soon as it exists, so a caller can clean up after a crash.
    """
    started = time.monotonic()
    for attempt in range(1, component.attempts + 1):
        launch = component.launch(ctx)
        process = spawn(
            launch.argv, log_path=log_path, env=launch.env, cwd=launch.cwd, append_log=attempt > 1
        )
        if on_spawn is not None:
            on_spawn(process)
        try:
            ready = _wait_ready(component, launch, process, cancel)
        except PortConflict as conflict:
            process.stop(term_timeout=component.stop_timeout)
            if attempt == component.attempts:
                raise ComponentFailed(component.name, str(conflict), log_path) from conflict
            continue
        except BaseException:
            process.stop(term_timeout=component.stop_timeout)
            raise
        return RunningComponent(
            name=component.name,
            process=process,
            launch=launch,
            ready=ready,
            startup_seconds=time.monotonic() - started,
        )
    raise AssertionError("unreachable: attempts >= 1")


def _wait_ready(
    component: Component,
    launch: Launch,
    process: ManagedProcess,
    cancel: threading.Event | None,
) -> Ready:
    deadline = time.monotonic() + component.timeout
    while True:
        if cancel is not None and cancel.is_set():
            raise StartCancelled(component.name)
        if not process.alive():
            component.probe(launch, process)  # may raise PortConflict, which explains the exit
            raise ComponentFailed(
                component.name,
                f"exited with code {process.returncode} before becoming healthy",
                process.log_path,
            )
        ready = component.probe(launch, process)
        if ready is not None:
            return ready
        if time.monotonic() >= deadline:
            raise ComponentFailed(
                component.name,
                f"not healthy within {component.timeout:g}s",
                process.log_path,
            )
        if cancel is not None:
            cancel.wait(_POLL_SECONDS)
        else:
            time.sleep(_POLL_SECONDS)
