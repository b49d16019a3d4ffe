"""The real Pub/Sub and Firestore emulators from the Google Cloud CLI packages.

Each is started directly (not through ``gcloud beta emulators``) as the leader of its own process
group on a port we choose. Healthy means: our process is alive, a process of OUR group holds the
listening socket, and the emulator answers its HTTP API. The Pub/Sub emulator keeps running
after failing to bind a taken port, so "something answers on the port" alone proves nothing.

Start-up is dominated by JVM class loading, so we pass ``JAVA_TOOL_OPTIONS`` with C1-only JIT and
an application class-data-sharing archive (AppCDS) that the first run writes at exit and later
runs map: about 1.8 s -> 0.65 s per emulator when both start together on two cores.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from local.components import (
    Component,
    Launch,
    MissingComponent,
    PortConflict,
    Ready,
    RunningComponent,
    StackContext,
    free_port,
    http_get,
    start_component,
)
from local.procs import ManagedProcess, group_listens_on

HOST = "127.0.0.1"
_JAVA_PACKAGE = "openjdk-17-jre-headless"
# C1 only: the emulators serve test traffic, start-up time matters more than peak throughput.
_FAST_START_OPTIONS = ("-XX:TieredStopAtLevel=1",)
_CDS_MAGIC_DYNAMIC = bytes.fromhex("a8ab0bf0")  # little-endian 0xf00baba8, written last by the JVM


def pubsub_answers(host: str, port: int, project: str) -> bool:
    """True if a Pub/Sub API answers ``GET /v1/projects/<project>/topics`` with 200."""
    result = http_get(f"http://{host}:{port}/v1/projects/{project}/topics")
    return result is not None and result[0] == 200


def firestore_answers(host: str, port: int, project: str) -> bool:
    """True if the Firestore emulator answers ``GET /`` with 200 "Ok"."""
    del project  # the root endpoint is project-independent
    result = http_get(f"http://{host}:{port}/")
    return result is not None and result[0] == 200 and result[1].strip() == b"Ok"


@dataclass(frozen=True)
class EmulatorSpec:
    """Where one emulator lives in the Cloud SDK, how to run it and how to ask if it is up."""

    name: str
    title: str
    package: str  # the Debian package that installs it
    relative_path: str  # launcher script, relative to the SDK root
    jar_glob: str  # the jar(s) it runs, relative to the SDK root (keys the CDS archive)
    subcommand: tuple[str, ...]
    export_key: str  # stack.json key for host:port
    env_var: str  # what Google client libraries read
    answers: Callable[[str, int, str], bool]

    def argv(self, script: Path, port: int) -> list[str]:
        """The command that runs this emulator on HOST:port."""
        return [str(script), *self.subcommand, f"--host={HOST}", f"--port={port}"]


PUBSUB = EmulatorSpec(
    name="pubsub",
    title="Pub/Sub emulator",
    package="google-cloud-cli-pubsub-emulator",
    relative_path="platform/pubsub-emulator/bin/cloud-pubsub-emulator",
    jar_glob="platform/pubsub-emulator/lib/*.jar",
    subcommand=(),
    export_key="pubsub_emulator_host",
    env_var="PUBSUB_EMULATOR_HOST",
    answers=pubsub_answers,
)

FIRESTORE = EmulatorSpec(
    name="firestore",
    title="Firestore emulator",
    package="google-cloud-cli-firestore-emulator",
    relative_path="platform/cloud-firestore-emulator/cloud_firestore_emulator",
    jar_glob="platform/cloud-firestore-emulator/*.jar",
    subcommand=("start",),
    export_key="firestore_emulator_host",
    env_var="FIRESTORE_EMULATOR_HOST",
    answers=firestore_answers,
)

EMULATORS = (PUBSUB, FIRESTORE)


def sdk_root_candidates(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where the Google Cloud SDK may live, most specific first.

    ``gcloud info`` would know for sure but takes seconds; probing the usual places is instant.
    """
    environ = os.environ if environ is None else environ
    candidates: list[Path] = []
    if environ.get("CLOUDSDK_ROOT_DIR"):
        candidates.append(Path(environ["CLOUDSDK_ROOT_DIR"]))
    candidates += [Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk")]
    gcloud = shutil.which("gcloud", path=environ.get("PATH"))
    if gcloud:
        candidates.append(Path(gcloud).resolve().parent.parent)  # <root>/bin/gcloud
    unique: list[Path] = []
    for candidate in candidates:
        if candidate not in unique:
            unique.append(candidate)
    return unique


@functools.lru_cache(maxsize=16)
def _find_script(relative_path: str, roots: tuple[Path, ...]) -> Path | None:
    for root in roots:
        script = root / relative_path
        if script.is_file() and os.access(script, os.X_OK):
            return script
    return None


def find_emulator(spec: EmulatorSpec, roots: Sequence[Path] | None = None) -> Path:
    """The emulator's launcher script; raises MissingComponent naming the package to install."""
    search = tuple(roots) if roots is not None else tuple(sdk_root_candidates())
    script = _find_script(spec.relative_path, search)
    if script is None:
        where = ", ".join(str(root) for root in search) or "(no Cloud SDK root found)"
        raise MissingComponent(
            spec.title,
            f"{spec.relative_path} not found under {where}",
            f"Install the Debian package {spec.package} (apt-get install {spec.package}).",
        )
    return script


def find_java(environ: Mapping[str, str] | None = None) -> Path:
    """The java binary the emulator scripts will use; raises MissingComponent if there is none."""
    environ = os.environ if environ is None else environ
    if environ.get("JAVA_HOME"):
        java = Path(environ["JAVA_HOME"]) / "bin" / "java"
        if java.is_file():
            return java
    found = shutil.which("java", path=environ.get("PATH"))
    if found is None:
        raise MissingComponent(
            "Java 17 runtime (needed by the emulators)",
            "no `java` on PATH and JAVA_HOME is not set",
            f"Install the Debian package {_JAVA_PACKAGE} (apt-get install {_JAVA_PACKAGE}).",
        )
    return Path(found)


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Per-user cache for JVM class-data archives (``HEKATON_CACHE_DIR`` overrides it)."""
    environ = os.environ if environ is None else environ
    if environ.get("HEKATON_CACHE_DIR"):
        return Path(environ["HEKATON_CACHE_DIR"])
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hekaton"


def _archive_path(spec: EmulatorSpec, script: Path, java: Path, cache: Path) -> Path:
    """Where this emulator's CDS archive lives; the name changes when the jars or the JDK do."""
    sdk_root = script.parents[len(Path(spec.relative_path).parts) - 1]
    key = hashlib.sha256()
    for path in [*sorted(sdk_root.glob(spec.jar_glob)), java.resolve()]:
        stat = path.stat()
        key.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return cache / "jvm" / f"{spec.name}-{key.hexdigest()[:16]}.jsa"


def _open_by_any_process(path: Path) -> bool:
    target = str(path)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return True
            except OSError:
                continue
    return False


def settle_cds_archives(cache: Path | None = None) -> None:
    """Promote finished CDS archives written by earlier runs; delete broken ones.

    A first run writes its archive to a private temporary name when the JVM exits; the JVM
    writes the header (with the magic number) last, so a file nobody has open any more and
    that starts with the magic number is complete. Renaming is atomic, so a JVM starting at
    the same moment sees either no archive or a whole one.
    """
    jvm_dir = (cache or cache_dir()) / "jvm"
    if not jvm_dir.is_dir():
        return
    for pending in jvm_dir.glob("*.jsa.*.tmp"):
        if _open_by_any_process(pending):
            continue  # a JVM is still writing it
        final = pending.with_name(pending.name.split(".jsa.", 1)[0] + ".jsa")
        try:
            with open(pending, "rb") as handle:
                complete = handle.read(4) == _CDS_MAGIC_DYNAMIC
            if complete and not final.exists():
                os.replace(pending, final)
            else:
                pending.unlink()
        except OSError:
            continue  # another process settled it first


def jvm_options(spec: EmulatorSpec, script: Path, java: Path, cache: Path | None = None) -> str:
    """``JAVA_TOOL_OPTIONS`` for a fast emulator start (see the module docstring)."""
    options = list(_FAST_START_OPTIONS)
    cache = cache or cache_dir()
    try:
        archive = _archive_path(spec, script, java, cache)
        archive.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return " ".join(options)  # no writable cache: start without class sharing
    settle_cds_archives(cache)
    if archive.is_file():
        # VerifySharedSpaces checks the archive's CRCs; a bad archive is ignored, not fatal.
        options += [f"-XX:SharedArchiveFile={archive}", "-XX:+VerifySharedSpaces"]
    else:
        pending = archive.with_name(f"{archive.name}.{secrets.token_hex(4)}.tmp")
        options.append(f"-XX:ArchiveClassesAtExit={pending}")
    return " ".join(options)


def _bind_failed(process: ManagedProcess) -> bool:
    return "BindException" in process.recent_output()


def emulator_healthy(spec: EmulatorSpec, port: int, project: str, pgid: int) -> bool:
    """True if group ``pgid`` owns the listening socket on ``port`` AND the emulator answers."""
    return group_listens_on(pgid, port) and spec.answers(HOST, port, project)


def emulator_component(
    spec: EmulatorSpec,
    *,
    port: int | None = None,
    roots: Sequence[Path] | None = None,
    timeout: float = 60.0,
) -> Component:
    """A stack component running ``spec`` on ``port`` (a fresh free port per attempt if None)."""

    def check() -> None:
        find_java()
        find_emulator(spec, roots)

    def launch(ctx: StackContext) -> Launch:
        script = find_emulator(spec, roots)
        chosen = port if port is not None else free_port(HOST)
        env = dict(os.environ)
        ours = jvm_options(spec, script, find_java(env))
        # The user's own JAVA_TOOL_OPTIONS come last, so they win over ours.
        env["JAVA_TOOL_OPTIONS"] = f"{ours} {env.get('JAVA_TOOL_OPTIONS', '')}".strip()
        return Launch(
            argv=tuple(spec.argv(script, chosen)),
            env=env,
            port=chosen,
            facts={"project": ctx.project},
        )

    def probe(launch: Launch, process: ManagedProcess) -> Ready | None:
        assert launch.port is not None
        if _bind_failed(process):
            raise PortConflict(f"port {launch.port} is already in use by another process")
        if not emulator_healthy(spec, launch.port, launch.facts["project"], process.pgid):
            return None
        host = f"{HOST}:{launch.port}"
        return Ready(url=f"http://{host}", exports={spec.export_key: host})

    return Component(
        name=spec.name,
        launch=launch,
        probe=probe,
        check=check,
        timeout=timeout,
        attempts=3 if port is None else 1,
    )


def reset_firestore(host: str, project: str) -> None:
    """Delete every document of ``project`` in the Firestore emulator at ``host`` (host:port)."""
    hostname, port = host.rsplit(":", 1)
    conn = http.client.HTTPConnection(hostname, int(port), timeout=10)
    try:
        conn.request("DELETE", f"/emulator/v1/projects/{project}/databases/(default)/documents")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(
            f"Firestore emulator reset of {project} failed: {response.status} {body!r}"
        )


def start_emulator(
    spec: EmulatorSpec,
    log_path: Path,
    *,
    project: str = "hekaton-local",
    port: int | None = None,
    roots: Sequence[Path] | None = None,
    timeout: float = 60.0,
) -> RunningComponent:
    """Start one emulator on its own (for test fixtures); stop it with ``.process.stop()``."""
    component = emulator_component(spec, port=port, roots=roots, timeout=timeout)
    assert component.check is not None
    component.check()
    ctx = StackContext(
        project=project, domain="example.com", state_dir=log_path.parent, repo_root=Path.cwd()
    )
    return start_component(component, ctx, log_path)
