"""The local stack: plans run in order and in parallel, stack.json, up/down/env through the CLI.

The plan machinery is tested with tiny Python components (fast). The CLI tests run the real
emulators and a stand-in for the local cluster that keeps its contract (``serve ... --ready-file``),
so they exercise our launcher, not the cluster; one test runs the real cluster with kubectl.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from functions.manifest import FUNCTIONS
from local import stack, stack_state
from local.cluster_component import cluster_component
from local.components import (
    Component,
    Launch,
    MissingComponent,
    Ready,
    StackContext,
    http_get,
    http_server_component,
)
from local.emulators import EMULATORS, find_emulator, find_java, pubsub_answers
from local.procs import GroupRecord, ManagedProcess, group_members, processes_with_env, spawn
from local.prometheus_component import find_prometheus

T = TypeVar("T")
MARKER = "HEKATON_STACK_TEST"

STANDIN_CLUSTER = '''
"""Stand-in for `python -m local.kube serve`: same arguments, same ready file, until SIGTERM."""
import argparse, json, os, signal, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("command")
for option in ("--host", "--domain", "--catalog", "--ready-file", "--revision-logs"):
    parser.add_argument(option, required=True)
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--gateway-port", type=int, required=True)
args = parser.parse_args()
mode = os.environ.get("STANDIN_MODE", "ok")
if mode == "exit":
    print(f"boom: cannot load catalog {args.catalog}", flush=True)
    sys.exit(3)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/version":
            body = json.dumps({"major": "1", "minor": "32", "gitVersion": "v1.32.0-standin",
                               "platform": "linux/amd64"}).encode()
        elif path == "/healthz":
            body = b"ok"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

if mode == "hang":  # never becomes ready
    print("stand-in cluster hanging", flush=True)
    threading.Event().wait()

kube = ThreadingHTTPServer((args.host, args.port), Handler)
gateway = ThreadingHTTPServer((args.host, args.gateway_port), Handler)
for server in (kube, gateway):
    threading.Thread(target=server.serve_forever, daemon=True).start()
ready = {
    "kube_server": f"http://{args.host}:{kube.server_address[1]}",
    "gateway_url": f"http://{args.host}:{gateway.server_address[1]}",
    "pid": 1 if mode == "foreign-pid" else os.getpid(),
}
partial = args.ready_file + ".partial"
with open(partial, "w") as handle:
    json.dump(ready, handle)
os.replace(partial, args.ready_file)
print("stand-in cluster serving", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
'''


def eventually(
    condition: Callable[[], T | None], timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll ``condition`` until truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# --- the plan machinery, with tiny components ---------------------------------------------------

# Writes $UPSTREAM into the file named by argv[1] (its "ready" signal), then idles.
IDLER = (
    "import os, sys, time\n"
    "open(sys.argv[1] + '.tmp', 'w').write(os.environ.get('UPSTREAM', ''))\n"
    "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "time.sleep(60)\n"
)


def idler(
    name: str,
    *,
    code: str = IDLER,
    upstream: Callable[[StackContext], str] | None = None,
    timeout: float = 10.0,
    check: Callable[[], None] | None = None,
) -> Component:
    """A component that is ready once it wrote its file; exports what it was given as UPSTREAM."""

    def launch(ctx: StackContext) -> Launch:
        ready_file = ctx.state_dir / f"{name}.ready"
        env = {**os.environ, "UPSTREAM": upstream(ctx) if upstream else ""}
        argv = (sys.executable, "-c", code, str(ready_file))
        return Launch(argv=argv, env=env, facts={"ready_file": str(ready_file)})

    def probe(launch: Launch, process: ManagedProcess) -> Ready | None:
        path = Path(launch.facts["ready_file"])
        if not path.exists():
            return None
        return Ready(url=f"file://{path}", exports={f"{name}_saw": path.read_text()})

    return Component(name=name, launch=launch, probe=probe, timeout=timeout, check=check)


@pytest.fixture
def options(tmp_path: Path) -> stack.StackOptions:
    """Options with a private state folder."""
    return stack.StackOptions(project="plan-test", state_dir=tmp_path / "state")


@pytest.fixture
def cleanup(options: stack.StackOptions) -> Iterator[None]:
    """Whatever a test leaves up is taken down."""
    yield
    stack.down(options.state_dir)


def _pids(state: stack_state.StackState) -> dict[str, tuple[int, int]]:
    return {name: (r.group.pid, r.group.pgid) for name, r in state.components.items()}


def _all_gone(state: stack_state.StackState) -> bool:
    return all(group_members(rec.group.pgid) == [] for rec in state.components.values())


def test_plan_runs_groups_in_parallel_then_setup_then_dependents(
    options: stack.StackOptions, cleanup: None
) -> None:
    seen: dict[str, Any] = {}

    def wire(ctx: StackContext) -> Mapping[str, str]:
        seen.update(urls=dict(ctx.urls), exports=dict(ctx.exports))
        return {"wired": f"{ctx.exports['a_saw']}+{ctx.exports['b_saw']}"}

    plan: list[stack.PlanStep] = [
        stack.ComponentGroup(
            (idler("a", upstream=lambda c: "A"), idler("b", upstream=lambda c: "B"))
        ),
        stack.SetupStep("wire", wire),
        stack.ComponentGroup((idler("c", upstream=lambda ctx: ctx.exports["wired"]),)),
    ]
    lines: list[str] = []

    started = stack.up(options, plan=plan, progress=lines.append)

    state = started.state
    assert seen["exports"] == {"a_saw": "A", "b_saw": "B"}
    assert set(seen["urls"]) == {"a", "b"}
    assert state.exports["c_saw"] == "A+B"  # the dependent saw what the setup step published
    assert list(state.components) == ["a", "b", "c"]
    assert set(state.startup_seconds) == {"a", "b", "c", "setup:wire", "total"}
    assert state.startup_seconds["total"] >= state.startup_seconds["c"]
    assert any("wire" in line and "done" in line for line in lines)
    on_disk = stack_state.load_state(options.state_dir)
    assert on_disk is not None and on_disk.to_json() == state.to_json()
    assert on_disk.status == "up" and on_disk.is_up()
    assert all(Path(rec.log).is_file() for rec in state.components.values())

    outcomes = started.stop()

    assert {o.name: o.outcome for o in outcomes} == dict.fromkeys("abc", "stopped")
    assert _all_gone(state)
    assert stack_state.load_state(options.state_dir) is None


def test_http_server_components_get_ports_env_and_publish_urls(
    options: stack.StackOptions, tmp_path: Path, cleanup: None
) -> None:
    (tmp_path / "hello.txt").write_text("hello")

    def serve(port: int, ctx: StackContext) -> list[str]:
        return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]

    files = stack.ComponentGroup(
        (
            http_server_component(
                "files",
                serve,
                cwd=tmp_path,
                health_path="/hello.txt",
                accept=lambda status, body: status == 200 and body == b"hello",
                exports=lambda url: {"files_url": url},
            ),
        )
    )
    # A dependent whose environment carries what the first group published.
    echo_env = (
        "import os, sys, http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = (os.environ['FILES_URL'] + ' ' + os.environ['OWN_URL']).encode()\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n"
    )
    dependent = stack.ComponentGroup(
        (
            http_server_component(
                "dependent",
                lambda port, ctx: [sys.executable, "-c", echo_env, str(port)],
                env=lambda ctx: {"FILES_URL": ctx.exports["files_url"]},
                # ...and its own URL, known only once its port is chosen.
                url_env=lambda ctx, url: {"OWN_URL": url},
            ),
        )
    )

    state = stack.up(options, plan=[files, dependent]).state

    files_url = state.exports["files_url"]
    assert http_get(files_url + "/hello.txt") == (200, b"hello")
    own_url = state.components["dependent"].url
    assert http_get(f"{own_url}/") == (200, f"{files_url} {own_url}".encode())


def test_a_lost_port_race_is_retried_on_a_fresh_port(
    options: stack.StackOptions, cleanup: None
) -> None:
    # First launch behaves like the Pub/Sub emulator on a taken port: complains, keeps running.
    squatter = "import time; print('java.net.BindException: Address already in use', flush=True)"
    launches: list[int] = []

    def command(port: int, ctx: StackContext) -> list[str]:
        launches.append(port)
        if len(launches) == 1:
            return [sys.executable, "-c", squatter + "; time.sleep(60)"]
        return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]

    token = uuid.uuid4().hex
    web = http_server_component("web", command, env=lambda ctx: {"RACE_TOKEN": token})

    started = stack.up(options, plan=[stack.ComponentGroup((web,))])

    assert len(launches) == 2
    web_record = started.state.components["web"]
    assert web_record.url == f"http://127.0.0.1:{launches[1]}"
    # The first attempt was stopped; only the second one runs.
    assert processes_with_env("RACE_TOKEN", token) == [web_record.group.pid]


def test_one_failing_component_stops_its_siblings_and_names_itself(
    options: stack.StackOptions,
) -> None:
    crash = "import sys; print('cannot open the model file', flush=True); sys.exit(2)"
    plan = [stack.ComponentGroup((idler("steady"), idler("flaky", code=crash)))]
    spawned: list[GroupRecord] = []
    real_on_spawn = stack._PlanRun.on_spawn

    def spy(self: Any, component: Component, process: ManagedProcess) -> None:
        spawned.append(process.record())
        real_on_spawn(self, component, process)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack._PlanRun, "on_spawn", spy)
        with pytest.raises(stack.StackStartFailed) as caught:
            stack.up(options, plan=plan)

    failure = caught.value
    assert failure.component == "flaky"
    assert "exited with code 2" in failure.reason
    assert "cannot open the model file" in failure.log_tail()
    assert len(spawned) == 2
    assert all(group_members(record.pgid) == [] for record in spawned)
    assert stack_state.load_state(options.state_dir) is None


def test_a_failing_setup_step_stops_what_was_started(options: stack.StackOptions) -> None:
    def broken(ctx: StackContext) -> None:
        raise ConnectionError("emulator refused the topic")

    token = uuid.uuid4().hex
    plan: list[stack.PlanStep] = [
        stack.ComponentGroup((idler("a", upstream=lambda ctx: token),)),
        stack.SetupStep("topics", broken),
    ]
    with pytest.raises(stack.StackStartFailed, match=r"topics.*emulator refused") as caught:
        stack.up(options, plan=plan)
    assert caught.value.log_path is None
    assert stack_state.load_state(options.state_dir) is None
    assert processes_with_env("UPSTREAM", token) == []


def test_on_up_runs_once_everything_is_healthy_and_before_the_record_says_up(
    options: stack.StackOptions,
) -> None:
    """So a Ctrl-C sent on reading "up" reaches `hekaton up` ready to stop, not to abort."""
    seen: list[str | None] = []

    def on_up() -> None:
        record = stack_state.load_state(options.state_dir)
        seen.append(record.status if record else None)
        seen.append(str(sorted(record.running().values()) if record else None))

    started = stack.up(options, plan=[stack.ComponentGroup((idler("a"),))], on_up=on_up)
    try:
        assert seen == ["starting", "[True]"]  # every component running, the record not yet "up"
        assert started.state.status == "up"
        assert stack_state.load_state(options.state_dir).status == "up"  # type: ignore[union-attr]
    finally:
        started.stop()


def test_a_component_that_never_gets_healthy_hits_its_deadline(options: stack.StackOptions) -> None:
    silent = "import time; time.sleep(60)"
    began = time.monotonic()
    with pytest.raises(stack.StackStartFailed, match=r"not healthy within 0\.5s"):
        stack.up(options, plan=[stack.ComponentGroup((idler("mute", code=silent, timeout=0.5),))])
    assert time.monotonic() - began < 5


def test_missing_component_is_reported_before_anything_starts(options: stack.StackOptions) -> None:
    def missing() -> None:
        raise MissingComponent("the frobnicator", "not on PATH", "apt-get install frobnicator.")

    plan = [stack.ComponentGroup((idler("a"), idler("b", check=missing)))]
    with pytest.raises(MissingComponent, match="apt-get install frobnicator"):
        stack.up(options, plan=plan)
    assert not (options.state_dir / "logs").exists()
    assert stack_state.load_state(options.state_dir) is None


def test_up_refuses_a_live_stack_and_changes_nothing(
    options: stack.StackOptions, cleanup: None
) -> None:
    plan = [stack.ComponentGroup((idler("a"),))]
    first = stack.up(options, plan=plan)
    before = stack_state.state_path(options.state_dir).read_bytes()

    with pytest.raises(stack.StackAlreadyUp) as caught:
        stack.up(options, plan=plan)

    assert caught.value.state.run_id == first.state.run_id
    assert stack_state.state_path(options.state_dir).read_bytes() == before
    assert first.state.is_up()
    assert stack.ensure_up(options, progress=None).run_id == first.state.run_id


def test_stale_record_is_cleaned_up_and_replaced(
    options: stack.StackOptions, cleanup: None
) -> None:
    plan = [stack.ComponentGroup((idler("a"), idler("b")))]
    old = stack.up(options, plan=plan).state
    os.killpg(old.components["a"].group.pgid, signal.SIGKILL)  # one component died meanwhile
    eventually(lambda: not old.is_up(), what="the stack to look stale")
    lines: list[str] = []

    new = stack.up(options, plan=plan, progress=lines.append).state

    assert new.run_id != old.run_id
    assert any("stale" in line and "b" in line for line in lines)
    assert _all_gone(old)  # the survivor of the old stack was stopped
    assert new.is_up()


def test_down_never_signals_a_recorded_pid_that_is_now_someone_else(
    options: stack.StackOptions, tmp_path: Path
) -> None:
    stranger = spawn(["sleep", "30"], log_path=tmp_path / "stranger.log")
    try:
        impostor_record = GroupRecord(
            pid=stranger.pid, pgid=stranger.pgid, start_ticks=stranger.start_ticks + 5, argv=()
        )
        state = stack_state.StackState(
            run_id="r1",
            status="up",
            project="p",
            domain="d",
            started_at="then",
            state_dir=options.state_dir,
            components={"x": stack_state.ComponentRecord("x", impostor_record, log="")},
        )
        options.state_dir.mkdir(parents=True)
        stack_state.state_path(options.state_dir).write_text(json.dumps(state.to_json()))

        report = stack.down(options.state_dir)

        assert [(o.name, o.outcome) for o in report.outcomes] == [("x", "already gone")]
        assert stranger.alive()
        assert stack_state.load_state(options.state_dir) is None
    finally:
        stranger.stop()


def test_down_without_a_stack_and_with_a_corrupt_record(options: stack.StackOptions) -> None:
    assert stack.down(options.state_dir) == stack.DownReport(found=False)
    stack_state.state_path(options.state_dir).write_text("{not json")
    report = stack.down(options.state_dir)
    assert not report.found and report.note and "unreadable" in report.note
    assert not stack_state.state_path(options.state_dir).exists()


def test_state_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    second = stack_state.state_lock(tmp_path, wait_seconds=0.2)
    with stack_state.state_lock(tmp_path), pytest.raises(stack_state.StackBusy, match="busy"):
        second.__enter__()
    with stack_state.state_lock(tmp_path, wait_seconds=0.2):
        pass  # free again once the first holder left


def test_only_selects_components_and_rejects_unknown_names(options: stack.StackOptions) -> None:
    plan: list[stack.PlanStep] = [
        stack.ComponentGroup((idler("a"), idler("b"))),
        stack.SetupStep("s", lambda c: None),
    ]
    selected = stack.select(plan, frozenset({"b"}))
    assert [type(s).__name__ for s in selected] == ["ComponentGroup", "SetupStep"]
    assert [c.name for c in selected[0].components] == ["b"]  # type: ignore[union-attr]
    with pytest.raises(stack_state.StackError, match=r"unknown component.*nope.*choose from a, b"):
        stack.select(plan, frozenset({"nope"}))


def test_cluster_probe_requires_the_ready_file_to_come_from_our_own_process(
    tmp_path: Path,
) -> None:
    script = tmp_path / "standin.py"
    script.write_text(STANDIN_CLUSTER)
    options = stack.StackOptions(state_dir=tmp_path, cluster_command=(sys.executable, str(script)))
    component = cluster_component(options.cluster_command)
    ctx = StackContext("p", "example.com", tmp_path, stack_state.REPO_ROOT)
    for mode, expect_ready in (("foreign-pid", False), ("ok", True)):
        launch = component.launch(ctx)
        env = {**launch.env, "STANDIN_MODE": mode}
        process = spawn(launch.argv, log_path=tmp_path / f"{mode}.log", env=env, cwd=launch.cwd)
        try:
            ready_file = Path(launch.facts["ready_file"])
            eventually(ready_file.exists, timeout=10, what="the ready file")
            urls = json.loads(ready_file.read_text())
            version_url = urls["kube_server"] + "/version"
            eventually(lambda: http_get(version_url), what="/version")  # noqa: B023
            result = component.probe(launch, process)
            assert (result is not None) is expect_ready, mode
        finally:
            process.stop()
    assert result is not None
    assert result.exports == {
        "kube_server": urls["kube_server"],
        "gateway_url": urls["gateway_url"],
    }


# --- the CLI, with the real emulators -----------------------------------------------------------


def _require_emulators() -> None:
    """Skip (naming the package to install) where the emulators, Java or Prometheus are missing."""
    try:
        find_java()
        for spec in EMULATORS:
            find_emulator(spec)
        find_prometheus()
    except MissingComponent as exc:
        pytest.skip(str(exc))


def hekaton_command() -> list[str]:
    """The installed console script (falls back to the module when not installed)."""
    script = Path(sys.executable).with_name("hekaton")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


class Cli:
    """Runs ``hekaton`` with a private state folder and a marker to find its processes."""

    def __init__(self, tmp_path: Path, cluster_mode: str = "ok", real_cluster: bool = False):
        script = tmp_path / "standin_cluster.py"
        script.write_text(STANDIN_CLUSTER)
        self.state_dir = tmp_path / "state"
        self.marker = uuid.uuid4().hex
        self.env = {
            **os.environ,
            "HEKATON_STATE_DIR": str(self.state_dir),
            "STANDIN_MODE": cluster_mode,
            MARKER: self.marker,
        }
        if not real_cluster:
            self.env["HEKATON_CLUSTER_COMMAND"] = f"{sys.executable} {script}"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run one command to completion."""
        return subprocess.run(
            [*hekaton_command(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start a long-running command (foreground ``up``)."""
        return subprocess.Popen(
            [*hekaton_command(), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    def our_processes(self) -> list[int]:
        """Every live process started through this CLI (they inherit the marker)."""
        return processes_with_env(MARKER, self.marker)

    def stack_json(self) -> dict[str, Any]:
        """The parsed stack.json."""
        return dict(json.loads((self.state_dir / "stack.json").read_text()))

    def stack_json_once_up(self) -> dict[str, Any] | None:
        """stack.json once it says the stack is up, else None."""
        if not (self.state_dir / "stack.json").exists():
            return None
        doc = self.stack_json()
        return doc if doc["status"] == "up" else None

    def cleanup(self) -> None:
        """Safety net: take down whatever a failed test left running."""
        if (self.state_dir / "stack.json").exists():
            self.run("down", timeout=60)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """A CLI runner with the stand-in cluster (real emulators)."""
    _require_emulators()
    runner = Cli(tmp_path)
    yield runner
    runner.cleanup()


@pytest.mark.slow
@pytest.mark.emulators
def test_up_detach_env_refusal_ps_and_down(cli: Cli) -> None:
    up = cli.run("up", "--detach")
    assert up.returncode == 0, up.stderr
    assert "stack up in" in up.stdout and "pubsub" in up.stdout

    doc = cli.stack_json()
    for key in (
        "project",
        "pubsub_emulator_host",
        "firestore_emulator_host",
        "kube_server",
        "gateway_url",
        "prometheus_url",
        "domain",
        "started_at",
        "components",
        "startup_seconds",
    ):
        assert key in doc, key
    assert doc["project"] == "hekaton-local" and doc["domain"] == "example.com"
    expected = {"pubsub", "firestore", "tasks", "cluster", "prometheus", "ticker"}
    expected |= {f"fn-{f.name}" for f in FUNCTIONS}
    assert set(doc["components"]) == expected
    assert expected | {"total"} <= set(doc["startup_seconds"])
    assert doc["status_url"] == doc["components"]["fn-status"]["url"]
    for name, component in doc["components"].items():
        assert {"pid", "pgid", "log", "url"} <= set(component), name
        assert group_members(component["pgid"]), f"{name} is not running"
    host, port = doc["pubsub_emulator_host"].rsplit(":", 1)
    # One probe has a 1 s bound; on a busy machine a live server can miss one, so poll.
    eventually(lambda: pubsub_answers(host, int(port), "hekaton-local"), what="Pub/Sub to answer")
    assert doc["prometheus_url"] == doc["components"]["prometheus"]["url"]
    ready = doc["prometheus_url"] + "/-/ready"
    assert eventually(lambda: http_get(ready), what="Prometheus to answer") == (
        200,
        b"Prometheus Server is Ready.\n",
    )
    prometheus_dir = cli.state_dir / "prometheus"
    assert (prometheus_dir / "data").is_dir()  # its own TSDB under the state folder
    assert json.loads((prometheus_dir / "targets.json").read_text()) == [
        {"targets": [doc["gateway_url"].removeprefix("http://")], "labels": {}}
    ]  # told where the gateway is, once the cluster was up
    shift_env = (Path("/proc") / str(doc["components"]["fn-shift"]["pid"]) / "environ").read_bytes()
    assert f"HEKATON_PROMETHEUS_URL={doc['prometheus_url']}".encode() in shift_env.split(b"\0")
    # Waits are woken by the stack's Cloud Tasks emulator, publishing through the Pub/Sub emulator.
    assert doc["tasks_queue"] == "projects/hekaton-local/locations/local/queues/hekaton-timers"
    assert doc["components"]["tasks"]["url"] == f"grpc://{doc['tasks_emulator_host']}"
    for variable in (
        b"HEKATON_TIMERS=cloudtasks",
        f"HEKATON_TASKS_EMULATOR_HOST={doc['tasks_emulator_host']}".encode(),
        f"HEKATON_TASKS_QUEUE={doc['tasks_queue']}".encode(),
        f"HEKATON_PUBSUB_PUBLISH_URL=http://{doc['pubsub_emulator_host']}".encode(),
    ):
        assert variable in shift_env.split(b"\0"), variable

    env = cli.run("env")
    assert env.returncode == 0, env.stderr
    exported = dict(line.removeprefix("export ").split("=", 1) for line in env.stdout.splitlines())
    assert exported["PUBSUB_EMULATOR_HOST"] == doc["pubsub_emulator_host"]
    assert exported["FIRESTORE_EMULATOR_HOST"] == doc["firestore_emulator_host"]
    assert exported["GOOGLE_CLOUD_PROJECT"] == exported["CLOUDSDK_CORE_PROJECT"] == "hekaton-local"
    assert exported["HEKATON_KUBE_SERVER"] == doc["kube_server"]
    assert exported["HEKATON_GATEWAY_URL"] == doc["gateway_url"]
    assert exported["HEKATON_PROMETHEUS_URL"] == doc["prometheus_url"]
    assert exported["HEKATON_TASKS_EMULATOR_HOST"] == doc["tasks_emulator_host"]
    kubeconfig = Path(exported["KUBECONFIG"])
    assert doc["kube_server"] in kubeconfig.read_text()
    kubectl = shutil.which("kubectl")
    if kubectl:  # kubectl reads the kubeconfig and reaches the (stand-in) API server
        version = subprocess.run(
            [kubectl, "version", "-o", "json", "--request-timeout=10s"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == "v1.32.0-standin"

    before = (cli.state_dir / "stack.json").read_bytes()
    again = cli.run("up", "--detach")
    assert again.returncode == 1
    assert "stack already up" in again.stderr and doc["kube_server"] in again.stderr
    assert (cli.state_dir / "stack.json").read_bytes() == before

    ps = cli.run("ps")
    assert ps.returncode == 0 and ps.stdout.count("running") == len(expected)
    rows = [line for line in ps.stdout.splitlines() if " running " in line]
    assert len({line.index(" running ") for line in rows}) == 1  # columns line up, long names too

    down = cli.run("down")
    assert down.returncode == 0, down.stderr
    stopped_line = next(line for line in down.stdout.splitlines() if line.startswith("stopped "))
    stopped = stopped_line.removeprefix("stopped ").rsplit(" in ", 1)[0]
    assert set(stopped.split(", ")) == expected
    assert all(group_members(c["pgid"]) == [] for c in doc["components"].values())
    assert cli.our_processes() == []
    assert not (cli.state_dir / "stack.json").exists()
    assert not kubeconfig.exists()
    assert cli.run("down").stdout.strip() == "no stack running"
    no_env = cli.run("env")
    assert no_env.returncode == 1 and "no stack running" in no_env.stderr


@pytest.mark.slow
@pytest.mark.emulators
def test_foreground_up_stops_everything_on_ctrl_c(cli: Cli) -> None:
    process = cli.start("up")
    try:
        doc = eventually(
            cli.stack_json_once_up,
            timeout=90,
            what="the stack to come up",
        )
        assert doc["supervisor_pid"] == process.pid
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "stopped" in out
    assert all(group_members(c["pgid"]) == [] for c in doc["components"].values())
    assert cli.our_processes() == []
    assert not (cli.state_dir / "stack.json").exists()


@pytest.mark.slow
@pytest.mark.emulators
def test_ctrl_c_during_start_up_stops_what_had_started(tmp_path: Path) -> None:
    _require_emulators()
    cli = Cli(tmp_path, cluster_mode="hang")

    def starting_with_all_spawned() -> dict[str, Any] | None:
        if not (cli.state_dir / "stack.json").exists():
            return None
        doc = cli.stack_json()
        # The whole first wave (the cluster hangs in it, so nothing after it starts). Counting 4
        # of its 5 only passed when a poll fell between the 4th spawn and the 5th.
        first_wave = {"pubsub", "firestore", "tasks", "cluster", "prometheus"}
        return doc if set(doc["components"]) == first_wave else None

    process = cli.start("up")
    try:
        doc = eventually(starting_with_all_spawned, timeout=60, what="every component spawned")
        assert doc["status"] == "starting"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert "interrupted during start-up" in err
    assert cli.our_processes() == []
    assert not (cli.state_dir / "stack.json").exists()


@pytest.mark.slow
@pytest.mark.emulators
def test_foreground_up_notices_down_from_another_shell(cli: Cli) -> None:
    process = cli.start("up", "--only", "pubsub")
    try:
        eventually(
            cli.stack_json_once_up,
            timeout=90,
            what="the stack to come up",
        )
        assert cli.run("down").returncode == 0
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "stopped by `hekaton down`" in out
    assert cli.our_processes() == []


@pytest.mark.slow
@pytest.mark.emulators
def test_failing_cluster_fails_up_and_leaves_nothing_running(tmp_path: Path) -> None:
    _require_emulators()
    cli = Cli(tmp_path, cluster_mode="exit")
    result = cli.run("up", "--detach")
    assert result.returncode == 1
    assert "cluster failed to start: exited with code 3" in result.stderr
    assert "boom: cannot load catalog" in result.stderr  # the tail of its log
    assert "nothing is left running" in result.stderr
    assert cli.our_processes() == []
    assert not (cli.state_dir / "stack.json").exists()


@pytest.mark.slow
@pytest.mark.emulators
@pytest.mark.kubectl
def test_real_cluster_answers_kubectl_through_the_written_kubeconfig(tmp_path: Path) -> None:
    _require_emulators()
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not available. Install the Debian package kubectl.")
    cli = Cli(tmp_path, real_cluster=True)
    try:
        up = cli.run("up", "--detach", "--only", "cluster")
        assert up.returncode == 0, up.stderr
        kubeconfig = cli.stack_json()["kubeconfig"]
        listing = subprocess.run(
            [kubectl, "get", "ksvc", "-A", "--request-timeout=10s"],
            env={**os.environ, "KUBECONFIG": kubeconfig},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert listing.returncode == 0, listing.stderr
        assert "No resources found" in listing.stderr + listing.stdout
    finally:
        cli.cleanup()
    assert cli.our_processes() == []
