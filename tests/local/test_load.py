"""The load generator against a real gateway and real iris revision processes (no stack needed).

Every count asserted here is a function of the seeds (the load's schedule, the gateway's split),
so nothing depends on timing; the statistical bounds are checked on those seeded draws.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from runtime_fixtures import (
    IRIS,
    MARKER_ENV,
    REPO_ROOT,
    catalog_with_fixtures,
    marked_processes,
    wait_for,
    wait_for_settled,
)

from cli.main import main
from local.kube.contracts import RevisionPhase, RevisionSpec, RouteTarget
from local.kube.gateway import Gateway
from local.load import (
    LoadConfig,
    LoadError,
    LoadRun,
    arrivals,
    iris_bodies,
    read_bodies,
    run_load,
    service_host,
)
from local.stack_state import StackState, write_state

NS = "models"
DOMAIN = "example.com"
IRIS_HOST = service_host("iris", NS, DOMAIN)
BAD_BODY = json.dumps({"instances": "not a list"}).encode()  # iris answers 400
Z = 4.5  # standard deviations: a seeded draw outside this would be a one-in-150,000 event


@dataclass
class Split:
    """iris v1 and v2 at 50/50 behind a gateway whose split is seeded."""

    gateway: Gateway

    @property
    def url(self) -> str:
        """The gateway's address."""
        return self.gateway.url


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Split]:
    """Two iris revisions, `iris` split 50/50 between them; all stopped afterwards."""
    from local.kube.runtime import ProcessRuntime

    tmp = tmp_path_factory.mktemp("load")
    marker = uuid.uuid4().hex
    runtime = ProcessRuntime(catalog_with_fixtures(tmp / "catalog.yaml"), log_dir=tmp / "logs")
    gateway = Gateway("127.0.0.1", 0, runtime, DOMAIN, rng=random.Random(7))
    try:
        for revision, tag in (("iris-a", "v1"), ("iris-b", "v2")):
            runtime.ensure_running(
                RevisionSpec(NS, "iris", revision, f"{IRIS}:{tag}", {MARKER_ENV: marker})
            )
        for revision in ("iris-a", "iris-b"):
            assert wait_for_settled(runtime, NS, revision).phase is RevisionPhase.READY
        gateway.set_routes(NS, "iris", [RouteTarget("iris-a", 50), RouteTarget("iris-b", 50)])
        # A Service whose only revision takes no traffic: the gateway answers 503.
        gateway.set_routes(NS, "idle", [RouteTarget("iris-a", 0, tag="old")])
        gateway.start()
        yield Split(gateway)
    finally:
        gateway.stop()
        runtime.stop_all()
    assert marked_processes(marker) == [], "a revision process outlived the load tests"


_ROUTED = re.compile(
    r'^istio_requests_total\{.*destination_canonical_revision="([^"]+)".*'
    r'response_code="(\d+)".*\} (\d+)$'
)


def routed(gateway: Gateway) -> Counter[tuple[str, str]]:
    """What the gateway's Istio metrics counted: (revision, code) -> requests."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in gateway.metrics.render().splitlines():
        if match := _ROUTED.match(line):
            counts[(match[1], match[2])] += int(match[3])
    return counts


def within(observed: float, n: int, p: float) -> bool:
    """Whether a Binomial(n, p) count is within Z standard deviations of its mean."""
    return abs(observed - n * p) <= Z * math.sqrt(n * p * (1 - p))


# -- the schedule (pure) --------------------------------------------------------------------


def test_the_schedule_is_poisson_at_the_requested_rate_and_fixed_by_the_seed() -> None:
    rate, duration = 25.0, 2.0
    counts = [sum(1 for _ in arrivals(rate, duration, seed, 10_000)) for seed in range(1000)]
    mean = rate * duration  # Poisson: mean = variance = 50
    assert abs(statistics.fmean(counts) - mean) <= Z * math.sqrt(mean / len(counts))
    # Index of dispersion of a Poisson count is 1; its standard error is about sqrt(2/n).
    assert abs(statistics.variance(counts) / mean - 1) <= Z * math.sqrt(2 / len(counts))
    assert sum(abs(c - mean) > 3 * math.sqrt(mean) for c in counts) <= 10  # ~0.3 % expected

    first = list(arrivals(rate, duration, 3, 10_000, body_count=4))
    assert first == list(arrivals(rate, duration, 3, 10_000, body_count=4))
    assert [a.at for a in first] == [a.at for a in arrivals(rate, duration, 3, 10_000)]
    assert all(0 < a.at < duration for a in first)
    assert [a.at for a in first] == sorted(a.at for a in first)
    assert {a.body for a in first} == {0, 1, 2, 3}
    assert len(list(arrivals(rate, duration, 3, 5))) == 5  # the request bound holds


def test_a_config_refuses_anything_but_a_loopback_gateway_and_unbounded_runs() -> None:
    for url in ("http://10.0.0.1:80", "https://127.0.0.1:8443", "http://example.com:80"):
        with pytest.raises(LoadError, match="only to the local stack's gateway"):
            LoadConfig(gateway_url=url, host=IRIS_HOST)
    good = "http://127.0.0.1:9"
    for bad, message in (
        ({"rps": 0}, "rate"),
        ({"duration": math.inf}, "duration"),
        ({"max_requests": 0}, "request bound"),
        ({"bodies": ()}, "body"),
        ({"headers": {"Host": "x"}}, "Host"),
    ):
        with pytest.raises(LoadError, match=message):
            LoadConfig(gateway_url=good, host=IRIS_HOST, **bad)  # type: ignore[arg-type]


def test_bodies_come_from_a_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "bodies.jsonl"
    path.write_text('{"instances": [[1, 2, 3, 4]]}\n\n{"instances": [[5, 6, 7, 8]]}\n')
    assert read_bodies(path) == (
        b'{"instances": [[1, 2, 3, 4]]}',
        b'{"instances": [[5, 6, 7, 8]]}',
    )
    path.write_text("{not json\n")
    with pytest.raises(LoadError, match=r"bodies.jsonl:1: not JSON"):
        read_bodies(path)
    assert len(iris_bodies()) == 30


# -- against the gateway ---------------------------------------------------------------------


def test_every_scheduled_request_is_sent_and_the_split_is_what_users_see(split: Split) -> None:
    bodies = (*iris_bodies(), BAD_BODY)
    config = LoadConfig(
        gateway_url=split.url, host=IRIS_HOST, bodies=bodies, rps=100, duration=2.0, seed=11
    )
    before = routed(split.gateway)

    report = run_load(config)

    planned = config.planned()
    # The rate: a Poisson(200) count for this seed, within its bound (no clock involved).
    assert abs(planned - 200) <= Z * math.sqrt(200)
    assert (report.state, report.finished) == ("completed", True)
    assert report.sent == report.scheduled == report.planned == planned
    assert (report.unsent, report.errors, report.route_misses) == (0, {}, 0)
    # Errors by status: exactly the requests that drew the bad body got iris's 400.
    bad = sum(1 for a in config.arrivals() if bodies[a.body] == BAD_BODY)
    assert bad > 0
    assert report.by_status == {200: planned - bad, 400: bad}
    # The 50/50 split as users see it, from model_version in the answers (400s carry none).
    versions = report.version_counts()
    assert set(versions) == {"v1", "v2"}
    assert versions["v1"] + versions["v2"] == planned - bad
    assert within(versions["v1"], planned - bad, 0.5), versions
    # The gateway's Istio metrics, which Prometheus scrapes, saw the same requests.
    seen = routed(split.gateway) - before
    assert sum(seen.values()) == planned
    assert seen[("iris-a", "200")] == versions["v1"]
    assert seen[("iris-b", "200")] == versions["v2"]
    latency = report.latency_ms
    assert latency is not None and 0 < latency.p50 <= latency.p90 <= latency.p99 <= latency.max
    assert report.to_json()["by_status"] == {"200": planned - bad, "400": bad}


def test_gateway_errors_and_refused_connections_are_counted(split: Split) -> None:
    idle = LoadConfig(
        gateway_url=split.url, host=service_host("idle", NS, DOMAIN), rps=50, duration=0.4, seed=1
    )
    report = run_load(idle)
    assert idle.planned() > 0
    assert report.by_status == {503: idle.planned()} and report.errors == {}

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = LoadConfig(
        gateway_url=f"http://127.0.0.1:{port}", host=IRIS_HOST, rps=50, duration=0.4, seed=1
    )
    report = run_load(closed)
    assert report.sent == closed.planned()
    assert report.errors == {"connection refused": closed.planned()}
    assert report.by_status == {} and report.latency_ms is None


def test_a_service_without_a_route_stops_the_run_at_once(split: Split) -> None:
    config = LoadConfig(
        gateway_url=split.url, host=service_host("nosuch", NS, DOMAIN), rps=100, duration=5.0
    )
    report = run_load(config)
    assert report.state == "no_route" and report.route_misses >= 1
    assert report.by_status == {404: report.sent}
    assert report.scheduled < config.planned()
    assert report.sent + report.unsent == report.scheduled


def test_stop_ends_a_background_run_with_the_report_so_far(split: Split) -> None:
    run = LoadRun(
        LoadConfig(gateway_url=split.url, host=IRIS_HOST, rps=50, duration=60.0, seed=2)
    ).start()
    wait_for(lambda: run.report().sent >= 10, 10, "ten requests answered")
    assert not run.done and run.report().state == "running"

    report = run.stop()

    assert run.done and report.finished and report.state == "stopped"
    assert 10 <= report.sent < report.planned
    assert report.sent + report.unsent == report.scheduled
    assert report.by_status == {200: report.sent}
    assert sum(report.version_counts().values()) == report.sent
    alive = [t.name for t in threading.enumerate() if t.name.startswith("load-w")]
    assert alive == [] and not any(t.name == "load-dispatch" for t in threading.enumerate())


class _Recorder(BaseHTTPRequestHandler):
    """Records each request's Host and headers; answers like a model."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(dict(self.headers.items()) | {"path": self.path})
        body = b'{"model_version": "rec"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_requests_carry_the_service_host_the_path_and_extra_headers() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = LoadConfig(
            gateway_url=f"http://127.0.0.1:{server.server_port}",
            host=IRIS_HOST,
            path="/v1/predict",
            headers={"Authorization": "Bearer token"},
            rps=50,
            duration=0.3,
            seed=4,
            concurrency=2,
        )
        report = run_load(config)
    finally:
        server.shutdown()
        server.server_close()
    assert report.version_counts() == {"rec": config.planned()} and config.planned() > 0
    first = _Recorder.seen[0]
    assert (first["Host"], first["path"]) == (IRIS_HOST, "/v1/predict")
    assert first["Authorization"] == "Bearer token"
    assert first["Content-Type"] == "application/json"


# -- the command -----------------------------------------------------------------------------


@pytest.fixture
def stack_dir(split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A stack.json pointing at the test gateway, as `hekaton up` writes it."""
    write_stack(tmp_path, {"gateway_url": split.url})
    monkeypatch.setenv("HEKATON_STATE_DIR", str(tmp_path))
    yield tmp_path


def write_stack(state_dir: Path, exports: dict[str, str]) -> None:
    """Record a stack that is up with these exports."""
    write_state(
        StackState(
            run_id="test",
            status="up",
            project="local",
            domain=DOMAIN,
            started_at="2026-12-01T00:00:00+00:00",
            state_dir=state_dir,
            components={},
            exports=exports,
        )
    )


def test_the_command_says_to_start_the_stack_when_none_is_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEKATON_STATE_DIR", str(tmp_path))
    assert main(["load", "iris"]) == 2
    err = capsys.readouterr().err
    assert "no local stack is running" in err and "hekaton up --detach" in err


def test_the_command_refuses_a_service_the_gateway_does_not_route(
    stack_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["load", "nosuch", "--namespace", NS, "--duration", "5"]) == 2
    err = capsys.readouterr().err
    assert f"no route for nosuch.{NS}.{DOMAIN}" in err and "hekaton status nosuch" in err


def test_the_command_runs_and_prints_the_report(
    split: Split, stack_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["load", "iris", "--namespace", NS, "--rps", "50", "--duration", "0.4", "--seed", "5"]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["state"] == "completed" and report["host"] == IRIS_HOST
    assert report["sent"] == report["planned"] > 0 and report["errors"] == {}
    assert sum(report["version_counts"].values()) == report["sent"]

    assert main(argv) == 0
    table = capsys.readouterr().out
    assert table.startswith(f"load {IRIS_HOST} via {split.url}/predict (50 req/s for 0.4s")
    assert re.search(r"sent +\d+ of \d+ planned .* expects 20 ± 4\)", table)
    assert "versions    v1: " in table


class _StatusAPI(BaseHTTPRequestHandler):
    """The status API's answers for one registered service, `iris`."""

    def do_GET(self) -> None:
        if self.path == "/services/iris":
            status, body = 200, {"service": "iris", "namespace": NS}
        else:
            name = self.path.rsplit("/", 1)[-1]  # the real API's message
            message = (
                f"service {name!r} is not registered (register it with `hekaton register FILE`)"
            )
            status, body = 404, {"error": message}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_command_takes_the_namespace_from_the_registered_service(
    split: Split,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HEKATON_STATE_DIR", str(tmp_path))
    write_stack(tmp_path, {"gateway_url": split.url})
    assert main(["load", "iris"]) == 2
    assert "pass --namespace" in capsys.readouterr().err

    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        write_stack(
            tmp_path,
            {"gateway_url": split.url, "status_url": f"http://127.0.0.1:{server.server_port}"},
        )
        assert main(["load", "nosuch"]) == 2
        err = capsys.readouterr().err
        assert "'nosuch' is not registered" in err and "pass --namespace" in err
        assert main(["load", "iris", "--rps", "50", "--duration", "0.3", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["host"] == IRIS_HOST
    finally:
        server.shutdown()
        server.server_close()


def test_ctrl_c_stops_the_command_with_the_report_so_far(split: Split, stack_dir: Path) -> None:
    before = sum(routed(split.gateway).values())
    command = [sys.executable, "-m", "cli.main", "load", "iris", "--namespace", NS]
    child = subprocess.Popen(
        [*command, "--rps", "50", "--duration", "60", "--json"],
        cwd=REPO_ROOT,
        env={**os.environ, "HEKATON_STATE_DIR": str(stack_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: sum(routed(split.gateway).values()) >= before + 10, 20, "load arriving")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    report = json.loads(out)
    assert report["state"] == "stopped" and report["finished"]
    assert report["sent"] >= 10 and report["sent"] < report["planned"]
