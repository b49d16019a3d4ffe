"""The real emulators: found, started on their own, healthy only when it is really ours, stopped."""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from local.components import ComponentFailed, MissingComponent, StackContext, start_component
from local.emulators import (
    EMULATORS,
    FIRESTORE,
    HOST,
    PUBSUB,
    EmulatorSpec,
    emulator_component,
    emulator_healthy,
    find_emulator,
    find_java,
    jvm_options,
    reset_firestore,
    sdk_root_candidates,
    settle_cds_archives,
    start_emulator,
)
from local.procs import ManagedProcess, group_members, is_running

CDS_MAGIC = bytes.fromhex("a8ab0bf0")


def _installed(spec: EmulatorSpec) -> EmulatorSpec:
    """Skip (naming the package) when ``spec`` or Java is not installed."""
    try:
        find_java()
        find_emulator(spec)
    except MissingComponent as exc:
        pytest.skip(str(exc))
    return spec


def _port_is_free(port: int) -> bool:
    """True if a server could listen on ``port`` now (SO_REUSEADDR, as servers bind)."""
    with socket.socket() as probe:
        # Our own health-check connections may linger in TIME_WAIT; they do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
            probe.listen()
        except OSError:
            return False
    return True


class _Impostor(BaseHTTPRequestHandler):
    """Answers like both emulators: what a stranger squatting on the port could look like."""

    def do_GET(self) -> None:
        body = b"Ok" if self.path == "/" else json.dumps({"topics": []}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def impostor() -> Iterator[int]:
    """A foreign HTTP server (in this test process) answering 200 on every emulator probe."""
    server = ThreadingHTTPServer((HOST, 0), _Impostor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


# --- finding the SDK and Java -------------------------------------------------------------------


def test_sdk_root_candidates_prefer_the_env_then_the_usual_places_then_gcloud(
    tmp_path: Path,
) -> None:
    sdk = tmp_path / "sdk"
    (sdk / "bin").mkdir(parents=True)
    gcloud = sdk / "bin" / "gcloud"
    gcloud.write_text("#!/bin/sh\n")
    gcloud.chmod(0o755)
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "gcloud").symlink_to(gcloud)

    roots = sdk_root_candidates({"CLOUDSDK_ROOT_DIR": "/opt/custom-sdk", "PATH": str(path_dir)})

    assert roots == [
        Path("/opt/custom-sdk"),
        Path("/usr/lib/google-cloud-sdk"),
        Path("/usr/share/google-cloud-sdk"),
        sdk,
    ]


@pytest.mark.parametrize("spec", EMULATORS, ids=lambda s: s.name)
def test_missing_emulator_names_its_debian_package(spec: EmulatorSpec, tmp_path: Path) -> None:
    with pytest.raises(MissingComponent) as caught:
        find_emulator(spec, roots=[tmp_path / "no-sdk-here"])
    message = str(caught.value)
    assert spec.package in message
    assert f"apt-get install {spec.package}" in message
    assert spec.relative_path in message


def test_missing_java_names_the_jre_package(tmp_path: Path) -> None:
    with pytest.raises(MissingComponent, match="openjdk-17-jre-headless"):
        find_java({"PATH": str(tmp_path)})


def test_missing_emulator_fails_the_start_before_any_process_exists(tmp_path: Path) -> None:
    with pytest.raises(MissingComponent, match=PUBSUB.package):
        start_emulator(PUBSUB, tmp_path / "pubsub.log", roots=[tmp_path])
    assert not (tmp_path / "pubsub.log").exists()


# --- JVM start-up options -----------------------------------------------------------------------


def _fake_sdk(tmp_path: Path, spec: EmulatorSpec) -> tuple[Path, Path]:
    """An SDK tree with the emulator's launcher and a jar, and a fake java binary."""
    root = tmp_path / "sdk"
    script = root / spec.relative_path
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    jar_dir = root / Path(spec.jar_glob).parent
    jar_dir.mkdir(parents=True, exist_ok=True)
    (jar_dir / "emulator.jar").write_bytes(b"PK")
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\n")
    return script, java


def test_first_start_writes_a_class_archive_later_starts_map_it(tmp_path: Path) -> None:
    script, java = _fake_sdk(tmp_path, FIRESTORE)
    cache = tmp_path / "cache"

    first = jvm_options(FIRESTORE, script, java, cache)
    assert "-XX:TieredStopAtLevel=1" in first
    pending = Path(first.split("-XX:ArchiveClassesAtExit=")[1].split()[0])
    assert pending.parent == cache / "jvm" and pending.name.endswith(".tmp")

    pending.write_bytes(CDS_MAGIC + b"\0" * 64)  # what the JVM leaves on a clean exit
    second = jvm_options(FIRESTORE, script, java, cache)

    archive = Path(second.split("-XX:SharedArchiveFile=")[1].split()[0])
    assert archive.is_file() and not pending.exists()
    assert "-XX:+VerifySharedSpaces" in second
    assert "ArchiveClassesAtExit" not in second


def test_archive_key_changes_when_the_emulator_jar_changes(tmp_path: Path) -> None:
    script, java = _fake_sdk(tmp_path, PUBSUB)
    cache = tmp_path / "cache"
    pending = Path(jvm_options(PUBSUB, script, java, cache).split("AtExit=")[1].split()[0])
    pending.write_bytes(CDS_MAGIC)
    settle_cds_archives(cache)
    (next((tmp_path / "sdk").rglob("emulator.jar"))).write_bytes(b"PK new version")

    assert "ArchiveClassesAtExit" in jvm_options(PUBSUB, script, java, cache)


def test_settling_keeps_archives_being_written_and_drops_broken_ones(tmp_path: Path) -> None:
    jvm = tmp_path / "jvm"
    jvm.mkdir()
    complete = jvm / "pubsub-k1.jsa.aaaa.tmp"
    complete.write_bytes(CDS_MAGIC + b"rest")
    truncated = jvm / "firestore-k2.jsa.bbbb.tmp"
    truncated.write_bytes(b"\0" * 16)  # killed before the header was written
    in_progress = jvm / "firestore-k3.jsa.cccc.tmp"

    with open(in_progress, "wb") as writer:  # a JVM still writing it
        writer.write(CDS_MAGIC)
        writer.flush()
        settle_cds_archives(tmp_path)
        assert in_progress.exists()

    assert (jvm / "pubsub-k1.jsa").read_bytes().startswith(CDS_MAGIC)
    assert not complete.exists() and not truncated.exists()
    assert not (jvm / "firestore-k2.jsa").exists()


# --- the real emulators -------------------------------------------------------------------------


@pytest.mark.emulators
@pytest.mark.parametrize("spec", EMULATORS, ids=lambda s: s.name)
def test_start_healthy_stop_leaves_no_java_and_frees_the_port(
    spec: EmulatorSpec, tmp_path: Path, impostor: int, eventually: Callable[..., Any]
) -> None:
    _installed(spec)
    running = start_emulator(spec, tmp_path / f"{spec.name}.log", timeout=60)
    process = running.process
    port = running.launch.port
    assert port is not None
    try:
        assert running.ready.exports == {spec.export_key: f"{HOST}:{port}"}
        # Each probe has a 1 s bound that a busy machine can miss once: poll it.
        eventually(
            lambda: emulator_healthy(spec, port, "hekaton-local", process.pgid),
            what=f"the {spec.name} emulator to be healthy",
        )
        # A stranger answering exactly like the emulator is still not *our* emulator.
        assert spec.answers(HOST, impostor, "hekaton-local")
        assert not emulator_healthy(spec, impostor, "hekaton-local", process.pgid)
        members = {m.pid: m.start_ticks for m in group_members(process.pgid)}
        assert any("java" in Path(f"/proc/{pid}/exe").resolve().name for pid in members)
        print(f"{spec.name} ready in {running.startup_seconds:.2f}s")
    finally:
        result = process.stop()

    assert result.gone
    assert not any(is_running(pid, ticks) for pid, ticks in members.items())
    assert group_members(process.pgid) == []
    assert _port_is_free(port)


@pytest.mark.emulators
@pytest.mark.parametrize("spec", EMULATORS, ids=lambda s: s.name)
def test_port_held_by_a_stranger_is_a_clear_error_and_leaves_nothing(
    spec: EmulatorSpec, tmp_path: Path, impostor: int
) -> None:
    _installed(spec)
    spawned: list[ManagedProcess] = []
    ctx = StackContext("hekaton-local", "example.com", tmp_path, tmp_path)
    component = emulator_component(spec, port=impostor, timeout=30)

    with pytest.raises(ComponentFailed, match=f"port {impostor} is already in use"):
        start_component(component, ctx, tmp_path / "e.log", on_spawn=spawned.append)

    assert len(spawned) == 1
    assert group_members(spawned[0].pgid) == []
    assert spec.answers(HOST, impostor, "hekaton-local")  # the stranger is untouched


# --- the session fixtures, through the real client libraries ------------------------------------


def test_pubsub_fixture_serves_the_real_client(pubsub_env: str) -> None:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

    project = f"test-{uuid.uuid4().hex[:8]}"
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(project, "fixture-check")
    publisher.create_topic(name=topic)
    names = [t.name for t in publisher.list_topics(request={"project": f"projects/{project}"})]
    assert names == [topic]
    assert os.environ["PUBSUB_EMULATOR_HOST"] == pubsub_env


def test_firestore_project_starts_empty_and_reset_deletes_documents(
    firestore_project: str, firestore_env: str
) -> None:
    from google.cloud import firestore

    db = firestore.Client(project=firestore_project)
    assert list(db.collection("things").stream()) == []
    db.collection("things").document("a").set({"n": 1})
    assert db.collection("things").document("a").get().to_dict() == {"n": 1}

    reset_firestore(firestore_env, firestore_project)

    assert not db.collection("things").document("a").get().exists
