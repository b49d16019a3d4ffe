"""The observer over a REAL Prometheus scraping the REAL local gateway: exact counts per revision.

The gateway (``local.kube.gateway``, the code the local cluster runs) routes requests to a tiny
upstream that answers the status and delay each request asks for, and exports Istio's metrics;
the session's Prometheus scrapes it every second. Every wait is a poll with a deadline on a
condition: the gateway has counted the requests, then Prometheus began a scrape after that.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from local.components import free_port
from local.kube.contracts import RevisionPhase, RevisionSpec, RevisionState, RouteTarget
from local.kube.gateway import ISTIO_DURATION_BUCKETS_MS as GATEWAY_BUCKETS
from local.kube.gateway import Gateway
from local.prometheus_component import start_prometheus
from shared.analysis.counts import ArmCounts
from shared.metrics.observers import ISTIO_DURATION_BUCKETS_MS, IstioObserver
from shared.metrics.prometheus import PrometheusProvider
from shared.metrics.provider import MetricsQueryError, MetricsUnavailable
from tests.conftest import LOCAL_CALL_TIMEOUT, PrometheusServer

NS, SERVICE, DOMAIN = "models", "iris", "example.com"
STABLE, CANDIDATE = "iris-stable01", "iris-cand0002"
THRESHOLD_MS = 100.0  # a bucket bound; the upstream's slow answers take 150 ms


class _Upstream(BaseHTTPRequestHandler):
    """``GET /<status>/<delay ms>`` answers that status after that delay."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes

    def do_GET(self) -> None:
        _, status, delay_ms = self.path.split("/")
        time.sleep(int(delay_ms) / 1000)
        body = b"ok\n"
        self.send_response(int(status))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Runtime:
    """Every revision is Ready on the upstream's port (the gateway asks only for `state`)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def state(self, namespace: str, revision: str) -> RevisionState:
        return RevisionState(RevisionPhase.READY, port=self.port)

    def ensure_running(self, spec: RevisionSpec) -> None:
        pass

    def stop(self, namespace: str, revision: str) -> None:
        pass

    def stop_all(self) -> None:
        pass

    def set_listener(self, listener: Callable[[str, str], None]) -> None:
        pass


@dataclass
class Mesh:
    """The gateway, scraped by the session's Prometheus, and an observer over that Prometheus."""

    gateway: Gateway
    prometheus: PrometheusServer
    observer: IstioObserver
    sent: int = 0

    def send(self, revision: str, status: int, count: int, delay_ms: int = 0) -> None:
        """``count`` requests through the gateway to ``revision`` (the candidate by its tag)."""
        host = f"candidate-{SERVICE}" if revision == CANDIDATE else SERVICE
        connection = http.client.HTTPConnection(
            self.gateway.url.removeprefix("http://"), timeout=10
        )
        try:
            for _ in range(count):
                connection.request(
                    "GET", f"/{status}/{delay_ms}", headers={"Host": f"{host}.{NS}.{DOMAIN}"}
                )
                response = connection.getresponse()
                response.read()
                assert response.status == status
        finally:
            connection.close()
        self.sent += count

    def settle(self) -> datetime:
        """Return once Prometheus holds everything sent so far; the moment that was certain."""
        deadline = time.monotonic() + 10
        while self._counted() < self.sent:  # the gateway counts just after it answers
            assert time.monotonic() < deadline, "the gateway did not count every request"
            time.sleep(0.01)
        counted = datetime.now(UTC)
        self.prometheus.wait_for_scrape(self.gateway.url, after=counted)
        return datetime.now(UTC)

    def _counted(self) -> int:
        text = self.gateway.metrics.render()
        return sum(
            int(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("istio_requests_total{")
        )

    def measure(self, revision: str, start: datetime, end: datetime) -> ArmCounts:
        return self.observer.measure(NS, SERVICE, revision, start, end, THRESHOLD_MS).counts


@pytest.fixture(scope="module")
def mesh(prometheus_server: PrometheusServer) -> Iterator[Mesh]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    gateway = Gateway("127.0.0.1", 0, _Runtime(upstream.server_port), DOMAIN)
    gateway.set_routes(
        NS, SERVICE, [RouteTarget(STABLE, 100), RouteTarget(CANDIDATE, 0, tag="candidate")]
    )
    gateway.start()
    http = httpx.Client()
    try:
        prometheus_server.scrape([gateway.url])
        mesh = Mesh(
            gateway,
            prometheus_server,
            IstioObserver(
                PrometheusProvider(prometheus_server.url, http, timeout=LOCAL_CALL_TIMEOUT)
            ),
        )
        mesh.settle()  # the target is live (Prometheus applies new targets on a 5 s tick)
        yield mesh
    finally:
        prometheus_server.scrape([])
        http.close()
        gateway.stop()
        upstream.shutdown()
        upstream.server_close()


def test_counts_for_candidate_and_stable_over_one_window_are_exact(mesh: Mesh) -> None:
    mesh.send(STABLE, 200, 30)  # before the window
    mesh.send(CANDIDATE, 200, 2)
    start = mesh.settle()

    mesh.send(STABLE, 200, 40)
    mesh.send(STABLE, 503, 1)
    mesh.send(CANDIDATE, 200, 12)
    mesh.send(CANDIDATE, 500, 4)  # the candidate's first 500s: a series born inside the window
    mesh.send(CANDIDATE, 200, 3, delay_ms=150)  # slower than the 100 ms threshold
    mesh.send(CANDIDATE, 404, 1)  # a client error, not the revision's fault
    end = mesh.settle()

    mesh.send(CANDIDATE, 500, 50)  # after the window
    mesh.settle()

    candidate = mesh.observer.measure(NS, SERVICE, CANDIDATE, start, end, THRESHOLD_MS)
    assert candidate.counts == ArmCounts(requests=20, errors=4, slow=3)
    assert candidate.raw == {"200": 15, "404": 1, "500": 4}
    assert candidate.resets == 0
    assert candidate.source == f"Prometheus at {mesh.prometheus.url}"
    assert mesh.measure(STABLE, start, end) == ArmCounts(requests=41, errors=1, slow=0)
    # The whole history, and a window in which nothing happened.
    assert mesh.measure(CANDIDATE, start, datetime.now(UTC)).errors == 54
    assert mesh.measure(STABLE, end, datetime.now(UTC)) == ArmCounts()


def test_a_rejected_query_is_a_query_error_with_prometheus_text(
    prometheus_server: PrometheusServer,
) -> None:
    with httpx.Client() as http:
        provider = PrometheusProvider(prometheus_server.url, http, timeout=LOCAL_CALL_TIMEOUT)
        now = datetime.now(UTC)
        with pytest.raises(MetricsQueryError, match=r"400 bad_data: .*parse error") as caught:
            provider.query("istio_requests_total{", now)
        assert caught.value.query == "istio_requests_total{"
        with pytest.raises(MetricsQueryError, match="'matrix' result"):
            provider.query("up[1m]", now)
        assert provider.online()
        assert provider.query("vector(3)", now)[0].value == 3.0


def test_a_stopped_prometheus_is_unavailable_never_no_data(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    state_dir = tmp_path_factory.mktemp("short-lived-prometheus")
    running = start_prometheus(state_dir, state_dir / "prometheus.log")
    with httpx.Client() as http:
        provider = PrometheusProvider(running.ready.url, http, timeout=LOCAL_CALL_TIMEOUT)
        observer = IstioObserver(provider)
        end = datetime.now(UTC)
        start = end - timedelta(minutes=1)
        # Up and empty: zero counts. Stopped: an error, not zero counts.
        assert observer.measure(NS, SERVICE, CANDIDATE, start, end, 250).counts == ArmCounts()
        running.process.stop()
        assert not provider.online()
        with pytest.raises(
            MetricsUnavailable, match=f"cannot reach Prometheus at {running.ready.url}"
        ):
            observer.measure(NS, SERVICE, CANDIDATE, start, end, 250)
        nobody = PrometheusProvider(f"http://127.0.0.1:{free_port()}", http, timeout=2)
        with pytest.raises(MetricsUnavailable, match="HEKATON_PROMETHEUS_URL"):
            nobody.query("up", end)


def test_the_gateway_exports_istios_default_buckets() -> None:
    assert tuple(map(float, GATEWAY_BUCKETS)) == tuple(map(float, ISTIO_DURATION_BUCKETS_MS))
