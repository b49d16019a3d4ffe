"""ProcessRuntime with real processes: readiness, Knative failure reasons, stopping and reaping."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_fixtures import (
    IRIS,
    MARKER_ENV,
    TEST_REPO,
    catalog_with_fixtures,
    get_json,
    is_reaped,
    marked_processes,
    wait_for,
    wait_for_settled,
)

from local.kube import port_owner
from local.kube import runtime as runtime_module
from local.kube.contracts import RevisionPhase, RevisionSpec
from local.kube.runtime import ProcessRuntime
from local.registry import derive_digest

NS = "models"


@pytest.fixture
def marker() -> str:
    """A value put in every started process's environment, to find leftovers."""
    return uuid.uuid4().hex


@pytest.fixture
def runtime(tmp_path: Path, marker: str) -> Iterator[ProcessRuntime]:
    """A runtime over the real catalog plus test images; everything stopped afterwards."""
    rt = ProcessRuntime(
        catalog_with_fixtures(tmp_path / "catalog.yaml"), log_dir=tmp_path / "logs", stop_grace=0.5
    )
    yield rt
    rt.stop_all()
    assert marked_processes(marker) == [], "a revision process outlived its test"


def spec(
    revision: str,
    image: str,
    marker: str,
    env: dict[str, str] | None = None,
    progress_deadline_seconds: float = 30.0,
) -> RevisionSpec:
    """A revision of service `iris` carrying the test's marker."""
    return RevisionSpec(
        namespace=NS,
        service="iris",
        revision=revision,
        image=image,
        env={MARKER_ENV: marker, **(env or {})},
        progress_deadline_seconds=progress_deadline_seconds,
    )


def test_v1_becomes_ready_and_serves_predictions_on_its_port(
    runtime: ProcessRuntime, marker: str
) -> None:
    seen: list[tuple[str, str, RevisionPhase]] = []
    lock = threading.Lock()

    def listener(namespace: str, revision: str) -> None:
        state = runtime.state(namespace, revision)
        assert state is not None
        with lock:
            seen.append((namespace, revision, state.phase))

    runtime.set_listener(listener)
    runtime.ensure_running(spec("iris-v1", f"{IRIS}:v1", marker))

    state = wait_for_settled(runtime, NS, "iris-v1")
    assert state.phase is RevisionPhase.READY, state
    assert state.port is not None
    assert get_json(state.port, "/healthz")["model_version"] == "v1"
    wait_for(lambda: (NS, "iris-v1", RevisionPhase.READY) in seen, 2, "the Ready notification")
    assert seen[0] == (NS, "iris-v1", RevisionPhase.PENDING)


def test_environment_follows_knative_runtime_contract(runtime: ProcessRuntime, marker: str) -> None:
    runtime.ensure_running(
        spec(
            "iris-echo",
            f"{TEST_REPO}:echo",
            marker,
            env={"OVERRIDDEN": "spec", "PORT": "1", "K_REVISION": "spoofed"},
        )
    )
    state = wait_for_settled(runtime, NS, "iris-echo")
    assert state.phase is RevisionPhase.READY, state
    assert state.port is not None
    env = get_json(state.port, "/env")
    assert env["PORT"] == str(state.port)
    assert (env["K_SERVICE"], env["K_CONFIGURATION"], env["K_REVISION"]) == (
        "iris",
        "iris",
        "iris-echo",
    )
    assert env["FROM_CATALOG"] == "catalog"
    assert env["OVERRIDDEN"] == "spec"


def test_image_by_digest_runs_the_tag_it_was_derived_from(
    runtime: ProcessRuntime, marker: str
) -> None:
    runtime.ensure_running(spec("iris-d", f"{IRIS}@{derive_digest(IRIS, 'v2')}", marker))
    state = wait_for_settled(runtime, NS, "iris-d")
    assert state.phase is RevisionPhase.READY and state.port is not None
    assert get_json(state.port, "/healthz")["model_version"] == "v2"


def test_unknown_image_is_container_missing(runtime: ProcessRuntime, marker: str) -> None:
    image = f"{IRIS}:v99"
    notified: list[str] = []
    runtime.set_listener(lambda namespace, revision: notified.append(revision))
    runtime.ensure_running(spec("iris-v99", image, marker))

    state = runtime.state(NS, "iris-v99")
    assert state is not None
    assert (state.phase, state.reason, state.condition) == (
        RevisionPhase.FAILED,
        "ContainerMissing",
        "ContainerHealthy",
    )
    assert image in (state.message or "")
    assert runtime.pid(NS, "iris-v99") is None
    assert notified == ["iris-v99"]


def test_crash_on_start_is_exit_code_1_with_the_log_tail(
    runtime: ProcessRuntime, marker: str
) -> None:
    runtime.ensure_running(spec("iris-v4", f"{IRIS}:v4", marker))
    state = wait_for_settled(runtime, NS, "iris-v4")
    assert (state.phase, state.reason, state.condition) == (
        RevisionPhase.FAILED,
        "ExitCode1",
        "ContainerHealthy",
    )
    assert "cannot load model weights" in (state.message or "")


def test_exit_after_ready_is_reported_with_kubernetes_signal_code(
    runtime: ProcessRuntime, marker: str
) -> None:
    runtime.ensure_running(spec("iris-v1", f"{IRIS}:v1", marker))
    assert wait_for_settled(runtime, NS, "iris-v1").phase is RevisionPhase.READY
    pid = runtime.pid(NS, "iris-v1")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    def failed() -> bool:
        state = runtime.state(NS, "iris-v1")
        return state is not None and state.phase is RevisionPhase.FAILED

    wait_for(failed, 5, "the killed revision to be reported")
    state = runtime.state(NS, "iris-v1")
    assert state is not None
    assert (state.reason, state.condition) == ("ExitCode137", "ContainerHealthy")
    assert is_reaped(pid)


def test_never_ready_hits_the_progress_deadline_and_is_killed(
    runtime: ProcessRuntime, marker: str
) -> None:
    runtime.ensure_running(
        spec("iris-slow", f"{TEST_REPO}:sleeper", marker, progress_deadline_seconds=0.5)
    )
    pid = runtime.pid(NS, "iris-slow")
    assert pid is not None
    pending = runtime.state(NS, "iris-slow")
    assert pending is not None and pending.phase is RevisionPhase.PENDING

    state = wait_for_settled(runtime, NS, "iris-slow", timeout=10)
    assert (state.phase, state.reason, state.condition) == (
        RevisionPhase.FAILED,
        "ProgressDeadlineExceeded",
        "ResourcesAvailable",
    )
    assert is_reaped(pid)


def test_ensure_running_is_idempotent_even_when_called_concurrently(
    runtime: ProcessRuntime, marker: str
) -> None:
    revision = spec("iris-v1", f"{IRIS}:v1", marker)
    threads = [threading.Thread(target=runtime.ensure_running, args=(revision,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    pid = runtime.pid(NS, "iris-v1")
    assert wait_for_settled(runtime, NS, "iris-v1").phase is RevisionPhase.READY
    runtime.ensure_running(revision)
    assert runtime.pid(NS, "iris-v1") == pid
    assert len(marked_processes(marker)) == 1


def test_stop_terminates_and_reaps_even_a_process_ignoring_sigterm(
    runtime: ProcessRuntime, marker: str
) -> None:
    runtime.ensure_running(spec("iris-stubborn", f"{TEST_REPO}:stubborn", marker))
    pid = runtime.pid(NS, "iris-stubborn")
    assert pid is not None
    log_path = runtime.log_path(NS, "iris-stubborn")
    # Only once it has installed its handler does SIGTERM stop being enough.
    wait_for(lambda: b"ignoring SIGTERM" in log_path.read_bytes(), 10, "the handler to be set")

    runtime.stop(NS, "iris-stubborn")

    assert is_reaped(pid)
    assert runtime.state(NS, "iris-stubborn") is None
    runtime.stop(NS, "iris-stubborn")  # idempotent


def test_stop_all_leaves_nothing_running(runtime: ProcessRuntime, marker: str) -> None:
    for name, image in [
        ("iris-v1", f"{IRIS}:v1"),
        ("iris-v2", f"{IRIS}:v2"),
        ("iris-slow", f"{TEST_REPO}:sleeper"),
        ("iris-stubborn", f"{TEST_REPO}:stubborn"),
    ]:
        runtime.ensure_running(spec(name, image, marker))
    wait_for(lambda: len(marked_processes(marker)) == 4, 10, "four processes to run")
    pids = [runtime.pid(NS, name) for name in ("iris-v1", "iris-v2", "iris-slow", "iris-stubborn")]

    runtime.stop_all()

    assert marked_processes(marker) == []
    assert all(pid is not None and is_reaped(pid) for pid in pids)
    assert runtime.state(NS, "iris-v1") is None


def test_a_failing_listener_does_not_stop_supervision(runtime: ProcessRuntime, marker: str) -> None:
    def broken_listener(namespace: str, revision: str) -> None:
        raise RuntimeError("listener bug")

    runtime.set_listener(broken_listener)
    runtime.ensure_running(spec("iris-v1", f"{IRIS}:v1", marker))
    assert wait_for_settled(runtime, NS, "iris-v1").phase is RevisionPhase.READY


class _Stranger(http.server.BaseHTTPRequestHandler):
    """Another stack's server: /healthz answers 200, anything else 404 (as the gateway's admin)."""

    paths: list[str] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        code = 200 if self.path == "/healthz" else 404
        body = b"ok\n" if code == 200 else b"no route\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_a_port_taken_by_another_process_is_never_ready_the_revision_moves(
    runtime: ProcessRuntime, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stranger = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stranger)
    threading.Thread(target=stranger.serve_forever, daemon=True).start()
    taken = stranger.server_address[1]
    given: list[int] = []
    real_free_port = runtime_module._free_port

    def first_the_taken_port(exclude: set[int | None]) -> int:
        given.append(taken if not given else real_free_port(exclude))
        return given[-1]

    monkeypatch.setattr(runtime_module, "_free_port", first_the_taken_port)
    try:
        runtime.ensure_running(spec("iris-v1", f"{IRIS}:v1", marker))
        state = wait_for_settled(runtime, NS, "iris-v1")
    finally:
        stranger.shutdown()
        stranger.server_close()
    assert state.phase is RevisionPhase.READY, state
    assert given[0] == taken and state.port == given[-1] != taken
    assert get_json(state.port, "/healthz")["model_version"] == "v1"
    # Only one process of the revision is left, the one on its own port.
    assert len(marked_processes(marker)) == 1


def test_port_owner_tells_our_listener_from_another_process(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_owner.port_owned_by(port, os.getpid()) is True
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert child.pid in port_owner.process_tree(os.getpid())
            assert port_owner.port_owned_by(port, child.pid) is False
        finally:
            child.kill()
            child.wait()
    assert port_owner.port_owned_by(port, os.getpid()) is None  # nobody listens any more


def test_a_log_folder_of_its_own_making_goes_at_stop_all_a_given_one_stays(
    tmp_path: Path, marker: str
) -> None:
    own = ProcessRuntime(catalog_with_fixtures(tmp_path / "catalog.yaml"), stop_grace=0.5)
    own.ensure_running(spec("iris-v1", f"{IRIS}:v1", marker))
    assert wait_for_settled(own, NS, "iris-v1").phase is RevisionPhase.READY
    assert own.log_path(NS, "iris-v1").is_file()
    own.stop_all()
    assert not own.log_dir.exists()

    given = tmp_path / "logs"
    kept = ProcessRuntime(catalog_with_fixtures(tmp_path / "catalog.yaml"), log_dir=given)
    kept.ensure_running(spec("iris-v1", f"{IRIS}:v1", marker))
    assert wait_for_settled(kept, NS, "iris-v1").phase is RevisionPhase.READY
    kept.stop_all()
    assert kept.log_path(NS, "iris-v1").is_file()
