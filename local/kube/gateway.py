"""The local ingress gateway: routes by Host to revision processes and exports Istio's metrics.

`<service>.<ns>.<domain>` splits requests across revisions by the current weights;
`<tag>-<service>.<ns>.<domain>`, or the header `Knative-Serving-Tag: <tag>` on the service
host, reaches the tagged revision (an unknown tag in the header falls back to the split, as
Knative does). Any other Host is the gateway itself: `GET /healthz` and `GET /metrics`.

A request to a workload with Istio security policies is first authenticated and authorized as
its sidecar would (`local.kube.mesh_auth`): 401/403 answered by the gateway.

Every request routed to a revision is counted in `istio_requests_total` and
`istio_request_duration_milliseconds`, whoever answered it (the revision, or the gateway
with 401/403 refused by policy or 503/504 when the revision could not be reached): users see those failures too.
"""

from __future__ import annotations

import bisect
import contextlib
import http.client
import logging
import random
import socket
import socketserver
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.kube.contracts import RevisionPhase, RevisionRuntime, RouteTarget
from local.kube.mesh_auth import MeshAuth, pod_labels

log = logging.getLogger(__name__)

TAG_HEADER = "Knative-Serving-Tag"
# Istio's default buckets for istio_request_duration_milliseconds.
ISTIO_DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_NO_BODY_STATUSES = frozenset({204, 304})


# -- routing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """The revision one request goes to."""

    namespace: str
    service: str
    revision: str


@dataclass(frozen=True)
class _ServiceRoutes:
    """One Service's traffic: the weighted split and the tags (immutable, swapped whole)."""

    namespace: str
    service: str
    weighted: tuple[str, ...]
    cumulative: tuple[int, ...]
    tags: Mapping[str, str]

    @classmethod
    def build(cls, namespace: str, service: str, targets: list[RouteTarget]) -> _ServiceRoutes:
        weights: dict[str, int] = {}
        tags: dict[str, str] = {}
        for target in targets:
            if target.percent < 0:
                raise ValueError(
                    f"{namespace}/{service}: revision {target.revision} has a negative percent"
                )
            if target.percent:
                # Knative lets one revision appear in several entries; their shares add up.
                weights[target.revision] = weights.get(target.revision, 0) + target.percent
            if target.tag:
                tags[target.tag] = target.revision
        cumulative, total = [], 0
        for weight in weights.values():
            total += weight
            cumulative.append(total)
        return cls(namespace, service, tuple(weights), tuple(cumulative), tags)

    def pick(self, rng: random.Random) -> str | None:
        """A revision chosen at random by weight, or None if nothing gets traffic."""
        if not self.weighted:
            return None
        point = rng.random() * self.cumulative[-1]
        return self.weighted[bisect.bisect_right(self.cumulative, point)]


@dataclass(frozen=True)
class _Snapshot:
    services: Mapping[tuple[str, str], _ServiceRoutes] = field(default_factory=dict)
    # host -> (service routes, tag or None)
    hosts: Mapping[str, tuple[_ServiceRoutes, str | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteMiss:
    """Why a request under the domain reaches no revision: HTTP status and a message."""

    status: int
    message: str


class RouteTable:
    """Host-based routes for every Service; updates swap an immutable snapshot (atomic reads)."""

    def __init__(self, domain: str, rng: random.Random | None = None) -> None:
        self.domain = domain.strip(".").lower()
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._snapshot = _Snapshot()

    def set_routes(self, namespace: str, service: str, targets: list[RouteTarget]) -> None:
        """Replace one Service's traffic table."""
        routes = _ServiceRoutes.build(namespace, service, targets)
        with self._lock:
            services = dict(self._snapshot.services)
            services[(namespace, service)] = routes
            self._snapshot = self._index(services)

    def remove_routes(self, namespace: str, service: str) -> None:
        """Forget a Service."""
        with self._lock:
            services = dict(self._snapshot.services)
            services.pop((namespace, service), None)
            self._snapshot = self._index(services)

    def is_routed_host(self, host: str) -> bool:
        """Whether `host` is under the cluster domain (else it addresses the gateway itself)."""
        return host.endswith("." + self.domain)

    def resolve(self, host: str, tag_header: str | None) -> Destination | RouteMiss:
        """The revision for a request to `host` (normalised, under the domain)."""
        found = self._snapshot.hosts.get(host)
        if found is None:
            return RouteMiss(404, f"no Knative service or tag answers to host {host!r}")
        routes, tag = found
        if tag is None and tag_header and tag_header.strip() in routes.tags:
            tag = tag_header.strip()
        # An unknown tag in the header falls back to the split, as in Knative.
        revision = routes.tags[tag] if tag is not None else routes.pick(self._rng)
        if revision is None:
            return RouteMiss(
                503,
                f"service {routes.namespace}/{routes.service} has no revision receiving traffic",
            )
        return Destination(routes.namespace, routes.service, revision)

    def _index(self, services: dict[tuple[str, str], _ServiceRoutes]) -> _Snapshot:
        hosts: dict[str, tuple[_ServiceRoutes, str | None]] = {}
        for (namespace, service), routes in services.items():
            hosts[f"{service}.{namespace}.{self.domain}"] = (routes, None)
            for tag in routes.tags:
                hosts[f"{tag}-{service}.{namespace}.{self.domain}"] = (routes, tag)
        return _Snapshot(services=services, hosts=hosts)


def normalise_host(header: str | None) -> str:
    """The Host header without port or trailing dot, lower-cased."""
    host = (header or "").strip().lower()
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and not name.endswith("]"):
        host = name
    return host.rstrip(".")


# -- metrics ------------------------------------------------------------------------------


class IstioMetrics:
    """`istio_requests_total` and `istio_request_duration_milliseconds`, reporter=destination."""

    def __init__(self, buckets: Iterable[float] = ISTIO_DURATION_BUCKETS_MS) -> None:
        self._buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        # (namespace, service, revision, code) -> [count, sum_ms, per-bucket counts..., +Inf count]
        self._series: dict[tuple[str, str, str, int], list[float]] = {}

    def observe(self, destination: Destination, code: int, duration_ms: float) -> None:
        """Count one request and its duration."""
        key = (destination.namespace, destination.service, destination.revision, code)
        index = 2 + bisect.bisect_left(self._buckets, duration_ms)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (3 + len(self._buckets))
            series[0] += 1
            series[1] += duration_ms
            series[index] += 1

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        with self._lock:
            snapshot = {key: list(values) for key, values in sorted(self._series.items())}
        counter = [
            "# HELP istio_requests_total Requests handled by a revision, as Istio counts them.",
            "# TYPE istio_requests_total counter",
        ]
        histogram = [
            "# HELP istio_request_duration_milliseconds Request durations, as Istio measures them.",
            "# TYPE istio_request_duration_milliseconds histogram",
        ]
        for (namespace, service, revision, code), values in snapshot.items():
            labels = _labels(
                reporter="destination",
                destination_service_name=service,
                destination_service_namespace=namespace,
                destination_canonical_service=service,
                destination_canonical_revision=revision,
                destination_workload=revision,
                destination_workload_namespace=namespace,
                response_code=str(code),
                request_protocol="http",
            )
            counter.append(f"istio_requests_total{{{labels}}} {_number(values[0])}")
            cumulative = 0.0
            for bound, count in zip([*self._buckets, float("inf")], values[2:], strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else _number(bound)
                histogram.append(
                    f'istio_request_duration_milliseconds_bucket{{{labels},le="{le}"}} '
                    f"{_number(cumulative)}"
                )
            histogram.append(f"istio_request_duration_milliseconds_sum{{{labels}}} {values[1]!r}")
            histogram.append(
                f"istio_request_duration_milliseconds_count{{{labels}}} {_number(values[0])}"
            )
        return "\n".join(counter + histogram) + "\n"


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


# -- upstream connections -----------------------------------------------------------------


@dataclass(frozen=True)
class UpstreamResponse:
    """A revision's answer, read in full."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class UpstreamPool:
    """Keep-alive connections to revision processes, shared by all handler threads."""

    def __init__(self, timeout: float, max_idle_per_port: int = 64) -> None:
        self._timeout = timeout
        self._max_idle = max_idle_per_port
        self._lock = threading.Lock()
        self._idle: dict[int, list[http.client.HTTPConnection]] = {}

    def send(
        self, port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> UpstreamResponse:
        """Send one request; a reused connection the revision already closed is retried once."""
        connection, reused = self._acquire(port)
        try:
            return self._exchange(port, connection, method, path, headers, body)
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            if not reused:
                raise
        # The server closed an idle connection; nothing reached the application.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=self._timeout)
        return self._exchange(port, connection, method, path, headers, body)

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _exchange(
        self,
        port: int,
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamResponse:
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body)))
            # Headers and body leave in one send().
            connection.endheaders(body or None)
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        result = UpstreamResponse(response.status, response.reason, response.getheaders(), data)
        if response.will_close:
            connection.close()
        else:
            self._release(port, connection)
        return result

    def _acquire(self, port: int) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(port)
            if idle:
                return idle.pop(), True
        return http.client.HTTPConnection("127.0.0.1", port, timeout=self._timeout), False

    def _release(self, port: int, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(port, [])
            if len(idle) < self._max_idle:
                idle.append(connection)
                return
        connection.close()


# -- the gateway --------------------------------------------------------------------------


class Gateway:
    """The ingress gateway: one HTTP port, Host-based routing, Istio metrics (a `Router`)."""

    def __init__(
        self,
        host: str,
        port: int,
        runtime: RevisionRuntime,
        domain: str,
        *,
        upstream_timeout: float = 60.0,
        max_body_bytes: int = 16 << 20,
        rng: random.Random | None = None,
    ) -> None:
        self.routes = RouteTable(domain, rng)
        self.metrics = IstioMetrics()
        # Istio's RequestAuthentication/AuthorizationPolicy, fed by local.kube.mesh_auth.PolicyWatcher.
        self.auth = MeshAuth()
        self.runtime = runtime
        self.max_body_bytes = max_body_bytes
        self.upstream = UpstreamPool(upstream_timeout)
        self._address = (host, port)
        self._server: _GatewayServer | None = None
        self._url: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def domain(self) -> str:
        """The cluster domain: hosts under it are routed to revisions."""
        return self.routes.domain

    @property
    def url(self) -> str:
        """`http://host:port` where the gateway listens (or last listened, once stopped)."""
        if self._url is None:
            raise RuntimeError("the gateway has not been started")
        return self._url

    def set_routes(self, namespace: str, service: str, targets: list[RouteTarget]) -> None:
        """Replace the traffic table for one Service (weights of 0 still reachable by tag)."""
        self.routes.set_routes(namespace, service, targets)

    def remove_routes(self, namespace: str, service: str) -> None:
        """Forget a Service (deleted)."""
        self.routes.remove_routes(namespace, service)

    def start(self) -> None:
        """Bind (port 0 picks a free one) and serve in a background thread."""
        if self._server is not None:
            return
        self._server = _GatewayServer(self._address, self)
        host = self._address[0]
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"  # listening everywhere; loopback reaches it
        self._url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="gateway",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close open client connections and pooled upstream connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.upstream.close()


class _GatewayServer(ThreadingHTTPServer):
    """A thread per client connection; remembers open connections so stop() can close them."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], gateway: Gateway) -> None:
        self.gateway = gateway
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _GatewayHandler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (slow where DNS is)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _BadRequest(Exception):
    """A request the gateway refuses before routing (bad framing, too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _GatewayHandler(BaseHTTPRequestHandler):
    """Handles one client connection: admin endpoints, or route and proxy to a revision."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "hekaton-gateway"
    timeout = 75  # seconds an idle keep-alive connection may wait for its next request
    server: _GatewayServer
    _metered: tuple[Destination, float] | None = None  # the routed request `_write` counts

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: access logs for thousands of requests would cost more than the proxying."""

    def _handle(self) -> None:
        self._metered = None
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nobody to answer
        except Exception:  # answer, never leave the client hanging or kill the thread
            log.exception("gateway failed on %s %s", self.command, self.path)
            self.close_connection = True
            self._reply_text(500, "gateway error: see the gateway log\n")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def _route(self) -> None:
        started = time.perf_counter()
        gateway = self.server.gateway
        try:
            body = self._read_body(gateway.max_body_bytes)
        except _BadRequest as exc:
            self.close_connection = True
            self._reply_text(exc.status, f"{exc}\n")
            return
        host = normalise_host(self.headers.get("Host"))
        if not gateway.routes.is_routed_host(host):
            self._admin(gateway)
            return
        target = gateway.routes.resolve(host, self.headers.get(TAG_HEADER))
        if isinstance(target, RouteMiss):
            # Logged: a miss for a host the cluster's status lists is a bug worth a trace.
            log.warning("route miss (%d) for host %s: %s", target.status, host, target.message)
            self._reply_text(target.status, target.message + "\n")
            return
        verdict = gateway.auth.check(
            target.namespace,
            pod_labels(target.service, target.revision),
            self.command,
            self.path,
            self.headers.get("Authorization"),
        )
        # Counted by `_write`, just before the answer goes out: a client holding its answer
        # finds it in /metrics (counting afterwards let a scrape miss the last request).
        self._metered = (target, started)
        if verdict.status is not None:  # refused as the sidecar would; still counted
            self._reply_text(verdict.status, verdict.message + "\n")
        else:
            self._proxy(gateway, target, body, verdict.strip_authorization)

    def _proxy(
        self, gateway: Gateway, target: Destination, body: bytes, strip_authorization: bool = False
    ) -> int:
        """Forward to the revision; answer the client; return the status it got."""
        state = gateway.runtime.state(target.namespace, target.revision)
        if state is None or state.phase is not RevisionPhase.READY or state.port is None:
            why = "unknown to the runtime" if state is None else (state.reason or state.phase.value)
            return self._reply_text(
                503, f"revision {target.namespace}/{target.revision} is not ready: {why}\n"
            )
        headers = self._forward_headers()
        if strip_authorization:  # Istio consumes a verified token unless told to forward it
            headers = [(n, v) for n, v in headers if n.lower() != "authorization"]
        try:
            response = gateway.upstream.send(state.port, self.command, self.path, headers, body)
        except TimeoutError:
            return self._reply_text(504, f"upstream request timeout ({target.revision})\n")
        except (OSError, http.client.HTTPException) as exc:
            return self._reply_text(
                503, f"upstream connect error or disconnect ({target.revision}): {exc}\n"
            )
        out = [(n, v) for n, v in response.headers if n.lower() not in _HOP_BY_HOP]
        if self.command != "HEAD":
            out = [(n, v) for n, v in out if n.lower() != "content-length"]
            if response.status not in _NO_BODY_STATUSES:
                out.append(("Content-Length", str(len(response.body))))
        self._write(response.status, response.reason, out, response.body)
        return response.status

    def _forward_headers(self) -> list[tuple[str, str]]:
        """The client's end-to-end headers plus X-Forwarded-For/-Proto, as Envoy adds them."""
        dropped = _HOP_BY_HOP | {"content-length", "x-forwarded-for", "x-forwarded-proto"}
        dropped |= {
            token.strip().lower() for token in self.headers.get("Connection", "").split(",")
        }
        headers = [(n, v) for n, v in self.headers.items() if n.lower() not in dropped]
        forwarded_for = self.headers.get("X-Forwarded-For")
        client = self.client_address[0]
        headers.append(
            ("X-Forwarded-For", f"{forwarded_for}, {client}" if forwarded_for else client)
        )
        headers.append(("X-Forwarded-Proto", "http"))
        return headers

    def _admin(self, gateway: Gateway) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/healthz", "/metrics"):
            self._reply_text(
                404,
                f"no route for {path}: the gateway serves /healthz and /metrics; "
                f"model requests need a Host under .{gateway.domain}\n",
            )
        elif self.command not in ("GET", "HEAD"):
            self._reply_text(405, f"{path} answers GET only\n")
        elif path == "/healthz":
            self._reply_text(200, "ok\n")
        else:
            self._reply_text(
                200,
                gateway.metrics.render(),
                content_type="text/plain; version=0.0.4; charset=utf-8",
            )

    def _read_body(self, limit: int) -> bytes:
        encoding = self.headers.get("Transfer-Encoding", "").strip().lower()
        if encoding:
            if encoding != "chunked":
                raise _BadRequest(501, f"Transfer-Encoding {encoding!r} is not supported")
            return self._read_chunked(limit)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        if not length_text.strip().isdigit():
            raise _BadRequest(400, f"bad Content-Length {length_text!r}")
        length = int(length_text)
        if length > limit:
            raise _BadRequest(413, f"request body is {length} bytes; the gateway allows {limit}")
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                break
            total += size
            if total > limit:
                raise _BadRequest(413, f"chunked request body exceeds the gateway's {limit} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)
        # Trailers (ignored) end with an empty line.
        while self.rfile.readline(1024).strip():
            pass
        return b"".join(chunks)

    def _reply_text(
        self, status: int, text: str, content_type: str = "text/plain; charset=utf-8"
    ) -> int:
        body = text.encode()
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        self._write(status, HTTPStatus(status).phrase, headers, body)
        return status

    def _write(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        metered, self._metered = self._metered, None
        if metered is not None:
            target, started = metered
            self.server.gateway.metrics.observe(
                target, status, (time.perf_counter() - started) * 1000
            )
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{n}: {v}" for n, v in headers)]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # One write: headers and body as separate segments would meet delayed ACKs.
        self.wfile.write(head if self.command == "HEAD" else head + body)
