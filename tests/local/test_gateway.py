"""The ingress gateway in front of real revision processes: splits, tags, errors, Istio metrics."""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from runtime_fixtures import (
    IRIS,
    MARKER_ENV,
    TEST_REPO,
    catalog_with_fixtures,
    marked_processes,
    wait_for_settled,
)

from local.kube.contracts import RevisionPhase, RevisionSpec, RouteTarget
from local.kube.gateway import ISTIO_DURATION_BUCKETS_MS, Gateway
from local.kube.runtime import ProcessRuntime

NS = "models"
DOMAIN = "example.com"
MAX_BODY = 64 * 1024
SETOSA = {"instances": [[5.1, 3.5, 1.4, 0.2]]}

# revision -> image; every revision belongs to the service named before its last dash.
REVISIONS = {
    "split-a": f"{IRIS}:v1",
    "split-b": f"{IRIS}:v2",
    "tagged-stable": f"{IRIS}:v1",
    "tagged-candidate": f"{IRIS}:v3",
    "metered-main": f"{IRIS}:v1",
    "metered-beta": f"{IRIS}:v2",
    "flaky-v5": f"{IRIS}:v5",
    "echo-e": f"{TEST_REPO}:echo",
    "flip-one": f"{IRIS}:v1",
    "flip-two": f"{IRIS}:v2",
}


@dataclass
class Cluster:
    """The runtime and gateway under test."""

    runtime: ProcessRuntime
    gateway: Gateway


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Every revision of this module running, and a gateway in front; all stopped afterwards."""
    tmp = tmp_path_factory.mktemp("gateway")
    marker = uuid.uuid4().hex
    runtime = ProcessRuntime(catalog_with_fixtures(tmp / "catalog.yaml"), log_dir=tmp / "logs")
    gateway = Gateway("127.0.0.1", 0, runtime, DOMAIN, max_body_bytes=MAX_BODY)
    try:
        for revision, image in REVISIONS.items():
            runtime.ensure_running(
                RevisionSpec(NS, revision.rsplit("-", 1)[0], revision, image, {MARKER_ENV: marker})
            )
        runtime.ensure_running(
            RevisionSpec(NS, "pending", "pending-p", f"{TEST_REPO}:sleeper", {MARKER_ENV: marker})
        )
        for revision in REVISIONS:
            state = wait_for_settled(runtime, NS, revision)
            assert state.phase is RevisionPhase.READY, (revision, state)
        gateway.start()
        yield Cluster(runtime, gateway)
    finally:
        gateway.stop()
        runtime.stop_all()
    assert marked_processes(marker) == [], "a revision process outlived the gateway tests"


class Client:
    """A keep-alive HTTP client to the gateway."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=10)

    def send(
        self,
        host: str,
        method: str = "POST",
        path: str = "/predict",
        payload: Any = SETOSA,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request; returns status, headers and body."""
        body = json.dumps(payload).encode() if payload is not None else None
        self.connection.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        response = self.connection.getresponse()
        return response.status, response.headers, response.read()

    def version(self, host: str, headers: dict[str, str] | None = None) -> str:
        """The model_version that answered a prediction."""
        status, _, body = self.send(host, headers=headers)
        assert status == 200, body
        return str(json.loads(body)["model_version"])

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Client]:
    """A fresh client for one test."""
    c = Client(cluster.gateway.url)
    yield c
    c.close()


def host(service: str, tag: str | None = None) -> str:
    """The Knative host of a service, or of one of its tags."""
    return f"{tag + '-' if tag else ''}{service}.{NS}.{DOMAIN}"


# -- metrics parsing ----------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(client: Client) -> list[tuple[str, dict[str, str], float]]:
    """GET /metrics on the gateway's admin host and parse every sample."""
    status, headers, body = client.send("localhost", "GET", "/metrics", payload=None)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = []
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        samples.append((match[1], dict(_LABEL.findall(match[2])), float(match[3])))
    return samples


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels` (0 if absent)."""
    found = [
        v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return found[0] if found else 0.0


def requests_total(samples: list[tuple[str, dict[str, str], float]], revision: str) -> Counter[str]:
    """istio_requests_total of one revision of its own service (`<service>-<x>`), by code."""
    service = revision.rsplit("-", 1)[0]
    return Counter(
        {
            lab["response_code"]: int(v)
            for n, lab, v in samples
            if n == "istio_requests_total"
            and lab["destination_canonical_revision"] == revision
            and lab["destination_service_name"] == service
        }
    )


# -- routing ------------------------------------------------------------------------------


def test_a_10_90_split_holds_over_2000_requests_and_metrics_count_them(
    cluster: Cluster, client: Client
) -> None:
    cluster.gateway.set_routes(
        NS, "split", [RouteTarget("split-a", 10), RouteTarget("split-b", 90)]
    )
    n, p = 2000, 0.10
    versions = Counter(client.version(host("split")) for _ in range(n))

    assert set(versions) == {"v1", "v2"}
    bound = 4.5 * math.sqrt(n * p * (1 - p))  # ~60 around the expected 200
    assert abs(versions["v1"] - n * p) <= bound, versions
    samples = scrape(client)
    assert requests_total(samples, "split-a") == Counter({"200": versions["v1"]})
    assert requests_total(samples, "split-b") == Counter({"200": versions["v2"]})


def test_tags_reach_their_revision_by_host_and_by_header(cluster: Cluster, client: Client) -> None:
    cluster.gateway.set_routes(
        NS,
        "tagged",
        [
            RouteTarget("tagged-stable", 100, tag="stable"),
            RouteTarget("tagged-candidate", 0, tag="candidate"),
        ],
    )
    # The 0 % revision gets nothing from the split...
    assert {client.version(host("tagged")) for _ in range(100)} == {"v1"}
    # ...but is reachable by its tag host and by the tag header.
    assert {client.version(host("tagged", "candidate")) for _ in range(20)} == {"v3"}
    assert client.version(host("tagged"), {"Knative-Serving-Tag": "candidate"}) == "v3"
    assert client.version(host("tagged", "stable")) == "v1"
    # An unknown tag in the header falls back to the split, as Knative does.
    assert client.version(host("tagged"), {"Knative-Serving-Tag": "nope"}) == "v1"
    # A host with a port and upper case still matches.
    assert client.version(host("tagged", "candidate").upper() + ":80") == "v3"


def test_unknown_hosts_get_404_naming_the_host(cluster: Cluster, client: Client) -> None:
    status, _, body = client.send(host("ghost"))
    assert status == 404
    assert host("ghost") in body.decode()
    status, _, body = client.send(host("split", "nosuchtag"))
    assert status == 404


def test_removed_service_is_no_longer_routed(cluster: Cluster, client: Client) -> None:
    cluster.gateway.set_routes(NS, "gone", [RouteTarget("flip-one", 100)])
    assert client.version(host("gone")) == "v1"
    cluster.gateway.remove_routes(NS, "gone")
    assert client.send(host("gone"))[0] == 404


def test_revision_not_ready_or_unknown_gets_503(cluster: Cluster, client: Client) -> None:
    cluster.gateway.set_routes(NS, "pending", [RouteTarget("pending-p", 100)])
    status, _, body = client.send(host("pending"))
    assert status == 503
    assert "models/pending-p is not ready: Pending" in body.decode()

    cluster.gateway.set_routes(NS, "nowhere", [RouteTarget("nowhere-x", 100)])
    status, _, body = client.send(host("nowhere"))
    assert status == 503
    assert "unknown to the runtime" in body.decode()

    cluster.gateway.set_routes(NS, "untrafficked", [RouteTarget("split-a", 0, tag="t")])
    status, _, body = client.send(host("untrafficked"))
    assert status == 503
    assert "no revision receiving traffic" in body.decode()


def test_route_updates_are_atomic_under_traffic(cluster: Cluster) -> None:
    tables = [
        [RouteTarget("flip-one", 100), RouteTarget("flip-two", 0)],
        [RouteTarget("flip-one", 0), RouteTarget("flip-two", 100)],
    ]
    cluster.gateway.set_routes(NS, "flip", tables[0])
    done = threading.Event()

    def flipper() -> None:
        i = 0
        # An update every millisecond: far more often than any controller, without hogging the GIL.
        while not done.wait(0.001):
            cluster.gateway.set_routes(NS, "flip", tables[i % 2])
            i += 1

    def traffic() -> Counter[tuple[int, str]]:
        c = Client(cluster.gateway.url)
        try:
            seen: Counter[tuple[int, str]] = Counter()
            for _ in range(150):
                status, _, body = c.send(host("flip"))
                seen[(status, json.loads(body)["model_version"] if status == 200 else "")] += 1
            return seen
        finally:
            c.close()

    thread = threading.Thread(target=flipper)
    thread.start()
    try:
        with ThreadPoolExecutor(2) as pool:
            results = sum((f.result() for f in [pool.submit(traffic) for _ in range(2)]), Counter())
    finally:
        done.set()
        thread.join(timeout=5)
    assert set(results) <= {(200, "v1"), (200, "v2")}, results
    assert sum(results.values()) == 300


# -- proxying -----------------------------------------------------------------------------


def test_method_path_query_headers_and_body_reach_the_revision(
    cluster: Cluster, client: Client
) -> None:
    cluster.gateway.set_routes(NS, "echo", [RouteTarget("echo-e", 100)])
    status, headers, body = client.send(
        host("echo"),
        "PUT",
        "/v1/models/x:predict?explain=true&a=%20b",
        payload={"hello": "wörld"},
        headers={"X-Request-Id": "abc", "Authorization": "Bearer t", "Connection": "keep-alive"},
    )
    assert status == 200
    echoed = json.loads(body)
    assert echoed["method"] == "PUT"
    assert echoed["path"] == "/v1/models/x:predict?explain=true&a=%20b"
    assert json.loads(echoed["body"]) == {"hello": "wörld"}
    sent = {k.lower(): v for k, v in echoed["headers"]}
    assert sent["host"] == host("echo")
    assert sent["x-request-id"] == "abc"
    assert sent["authorization"] == "Bearer t"
    assert sent["x-forwarded-proto"] == "http"
    assert "connection" not in sent  # hop-by-hop headers stay at the gateway
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]


def test_chunked_request_bodies_are_forwarded_whole(cluster: Cluster) -> None:
    cluster.gateway.set_routes(NS, "echo", [RouteTarget("echo-e", 100)])
    client = Client(cluster.gateway.url)
    try:
        chunks = iter([b'{"part": ', b'"one", ', b'"n": 2}'])
        client.connection.request(
            "POST", "/c", body=chunks, headers={"Host": host("echo")}, encode_chunked=True
        )
        response = client.connection.getresponse()
        assert response.status == 200
        assert json.loads(json.loads(response.read())["body"]) == {"part": "one", "n": 2}
    finally:
        client.close()


def test_oversized_and_malformed_requests_are_refused(cluster: Cluster) -> None:
    cluster.gateway.set_routes(NS, "echo", [RouteTarget("echo-e", 100)])
    client = Client(cluster.gateway.url)
    try:
        status, _, body = client.send(host("echo"), payload={"blob": "x" * MAX_BODY})
        assert status == 413
        assert str(MAX_BODY) in body.decode()
    finally:
        client.close()
    with socket.create_connection(_address(cluster.gateway.url), timeout=5) as raw:
        raw.sendall(
            f"POST / HTTP/1.1\r\nHost: {host('echo')}\r\nContent-Length: ten\r\n\r\n".encode()
        )
        assert raw.recv(1024).startswith(b"HTTP/1.1 400 ")


def test_admin_endpoints_answer_on_any_host_outside_the_domain(client: Client) -> None:
    status, _, body = client.send("127.0.0.1", "GET", "/healthz", payload=None)
    assert (status, body) == (200, b"ok\n")
    status, _, body = client.send("localhost", "GET", "/predict", payload=None)
    assert status == 404
    assert f".{DOMAIN}" in body.decode()
    assert client.send("localhost", "POST", "/metrics")[0] == 405


# -- metrics ------------------------------------------------------------------------------


def test_metrics_count_every_request_by_revision_and_code_with_istio_labels(
    cluster: Cluster, client: Client
) -> None:
    cluster.gateway.set_routes(
        NS,
        "metered",
        [RouteTarget("metered-main", 100), RouteTarget("metered-beta", 0, tag="beta")],
    )
    started = time.perf_counter()
    sent = {"metered-main": Counter[str](), "metered-beta": Counter[str]()}
    for _ in range(30):
        sent["metered-main"][str(client.send(host("metered"))[0])] += 1
    for _ in range(7):
        sent["metered-main"][str(client.send(host("metered"), payload={"instances": "x"})[0])] += 1
    for _ in range(12):
        sent["metered-beta"][str(client.send(host("metered", "beta"))[0])] += 1
    for _ in range(3):
        sent["metered-beta"][str(client.send(host("metered", "beta"), path="/nope")[0])] += 1
    wall_ms = (time.perf_counter() - started) * 1000
    assert sent == {
        "metered-main": Counter({"200": 30, "400": 7}),
        "metered-beta": Counter({"200": 12, "404": 3}),
    }

    samples = scrape(client)
    for revision, codes in sent.items():
        assert requests_total(samples, revision) == codes
        for code, count in codes.items():
            labels = {"destination_canonical_revision": revision, "response_code": code}
            counter = [
                lab for n, lab, _ in samples if n == "istio_requests_total" and _has(lab, labels)
            ]
            assert counter == [
                {
                    "reporter": "destination",
                    "destination_service_name": "metered",
                    "destination_service_namespace": NS,
                    "destination_canonical_service": "metered",
                    "destination_canonical_revision": revision,
                    "destination_workload": revision,
                    "destination_workload_namespace": NS,
                    "response_code": code,
                    "request_protocol": "http",
                }
            ]
            hist = "istio_request_duration_milliseconds"
            assert value(samples, f"{hist}_count", **labels) == count
            buckets = [
                value(samples, f"{hist}_bucket", le=_le(bound), **labels)
                for bound in ISTIO_DURATION_BUCKETS_MS
            ]
            assert buckets == sorted(buckets), "buckets must be cumulative"
            assert value(samples, f"{hist}_bucket", le="+Inf", **labels) == count
            assert 0 < value(samples, f"{hist}_sum", **labels) <= wall_ms


def test_v5_error_share_and_slowness_show_in_metrics(cluster: Cluster) -> None:
    cluster.gateway.set_routes(NS, "flaky", [RouteTarget("flaky-v5", 100)])
    warmup, after, fail_every = 20, 40, 4  # as published in examples/catalog.yaml

    def one(_: int) -> int:
        c = Client(cluster.gateway.url)
        try:
            return c.send(host("flaky"))[0]
        finally:
            c.close()

    first = [one(i) for i in range(warmup)]
    with ThreadPoolExecutor(8) as pool:
        rest = list(pool.map(one, range(after)))

    assert first == [200] * warmup  # smoke checks pass
    assert Counter(rest) == Counter({500: after // fail_every, 200: after - after // fail_every})
    client = Client(cluster.gateway.url)
    try:
        samples = scrape(client)
    finally:
        client.close()
    assert requests_total(samples, "flaky-v5") == Counter(
        {"500": after // fail_every, "200": warmup + after - after // fail_every}
    )
    # Every failure came after the warm-up, so each took the injected 150-300 ms.
    failures = {"destination_canonical_revision": "flaky-v5", "response_code": "500"}
    assert value(samples, "istio_request_duration_milliseconds_bucket", le="100", **failures) == 0
    assert (
        value(samples, "istio_request_duration_milliseconds_bucket", le="2500", **failures)
        == after // fail_every
    )


def test_stop_closes_idle_connections_and_frees_the_port(cluster: Cluster) -> None:
    gateway = Gateway("127.0.0.1", 0, cluster.runtime, DOMAIN)
    gateway.start()
    address = _address(gateway.url)
    client = Client(gateway.url)
    try:
        assert client.send("localhost", "GET", "/healthz", payload=None)[0] == 200
        gateway.stop()
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            client.send("localhost", "GET", "/healthz", payload=None)
    finally:
        client.close()
        gateway.stop()
    with socket.socket() as again:
        # Closed connections may linger in TIME_WAIT; only a listener would block this bind.
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(address)


def _address(url: str) -> tuple[str, int]:
    host_part, port = url.removeprefix("http://").rsplit(":", 1)
    return host_part, int(port)


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _has(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())
