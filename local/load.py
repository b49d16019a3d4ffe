"""User-like load through the local gateway's main URL, so the canary and stable revisions see traffic.

Open loop: requests leave at Poisson arrival times drawn from a seeded generator, whether or
not earlier ones have been answered (as users arrive), and a small pool of worker threads with
keep-alive connections sends them. A run is bounded twice, by its duration and by a total
request count, and stops by itself; ``LoadRun.stop()`` ends it early with the report so far.
It only ever talks to a loopback gateway (the local stack's), with ``Host:
<service>.<namespace>.<domain>``, so the gateway splits the requests as it splits users'.

The schedule (how many requests, when, with which body) is a pure function of the seed, the
rate, the duration and the bounds (``arrivals``): a run with a given seed sends exactly the
requests ``LoadConfig.planned()`` counts.

The demo keeps load on in the background while it pushes images::

    run = LoadRun(config_for_service("iris", "models", rps=20, duration=300)).start()
    ...  # push, watch the rollout
    report = run.stop()
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from local import stack_state

MAX_RPS = 1000.0
MAX_DURATION_SECONDS = 3600.0
MAX_REQUESTS = 1_000_000
DEFAULT_MAX_REQUESTS = 100_000
MAX_CONCURRENCY = 64
# The start of the gateway's answer when no Knative Service (or tag) answers to the Host
# (local/kube/gateway.py, RouteTable.resolve): the service is not deployed.
ROUTE_MISS_PREFIX = b"no Knative service or tag answers to host"

# Single flowers from Fisher's Iris data (sepal length, sepal width, petal length, petal width,
# cm): ten of each species, as users would send them.
IRIS_FLOWERS: tuple[tuple[float, float, float, float], ...] = (
    (5.1, 3.5, 1.4, 0.2), (4.9, 3.0, 1.4, 0.2), (4.7, 3.2, 1.3, 0.2), (4.6, 3.1, 1.5, 0.2),
    (5.0, 3.6, 1.4, 0.2), (5.4, 3.9, 1.7, 0.4), (4.6, 3.4, 1.4, 0.3), (5.0, 3.4, 1.5, 0.2),
    (4.4, 2.9, 1.4, 0.2), (4.9, 3.1, 1.5, 0.1),
    (7.0, 3.2, 4.7, 1.4), (6.4, 3.2, 4.5, 1.5), (6.9, 3.1, 4.9, 1.5), (5.5, 2.3, 4.0, 1.3),
    (6.5, 2.8, 4.6, 1.5), (5.7, 2.8, 4.5, 1.3), (6.3, 3.3, 4.7, 1.6), (4.9, 2.4, 3.3, 1.0),
    (6.6, 2.9, 4.6, 1.3), (5.2, 2.7, 3.9, 1.4),
    (6.3, 3.3, 6.0, 2.5), (5.8, 2.7, 5.1, 1.9), (7.1, 3.0, 5.9, 2.1), (6.3, 2.9, 5.6, 1.8),
    (6.5, 3.0, 5.8, 2.2), (7.6, 3.0, 6.6, 2.1), (4.9, 2.5, 4.5, 1.7), (7.3, 2.9, 6.3, 1.8),
    (6.7, 2.5, 5.8, 1.8), (7.2, 3.6, 6.1, 2.5),
)  # fmt: skip


class LoadError(RuntimeError):
    """Load cannot be sent as asked; the message says why and what to do."""


def iris_bodies() -> tuple[bytes, ...]:
    """One `/predict` body per flower in IRIS_FLOWERS."""
    return tuple(json.dumps({"instances": [list(flower)]}).encode() for flower in IRIS_FLOWERS)


def read_bodies(path: Path) -> tuple[bytes, ...]:
    """Request bodies from a JSONL file: one JSON document per non-blank line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LoadError(f"cannot read request bodies from {path}: {exc.strerror or exc}") from exc
    bodies = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError as exc:
            raise LoadError(f"{path}:{number}: not JSON: {exc}") from exc
        bodies.append(json.dumps(document).encode())
    if not bodies:
        raise LoadError(f"{path} holds no request bodies (one JSON document per line)")
    return tuple(bodies)


def service_host(service: str, namespace: str, domain: str) -> str:
    """The Host of a Knative Service's main URL, as the gateway routes it."""
    return f"{service}.{namespace}.{domain.strip('.')}"


def require_loopback(url: str) -> None:
    """LoadError unless `url` is plain http:// on a loopback address (the local gateway)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback or parts.port is None:
        raise LoadError(
            f"load goes only to the local stack's gateway (http://127.0.0.1:PORT), not {url!r}"
        )


@dataclass(frozen=True)
class StackGateway:
    """The running local stack's gateway: where it listens, its domain, the status API."""

    url: str
    domain: str
    status_url: str | None = None


def stack_gateway(state_dir: Path | None = None, *, timeout: float = 2.0) -> StackGateway:
    """The local stack's gateway from stack.json, checked to answer; LoadError saying what to do."""
    try:
        state = stack_state.load_state(state_dir)
    except stack_state.StateFileError as exc:
        raise LoadError(f"{exc}; run `hekaton down` then `hekaton up --detach`") from exc
    if state is None:
        where = stack_state.state_path(state_dir or stack_state.default_state_dir())
        raise LoadError(
            f"no local stack is running ({where} not found): start one with `hekaton up --detach`"
        )
    if state.status != "up":
        raise LoadError(
            f"the local stack is {state.status!r}, not up: wait for `hekaton up` to finish, "
            "or restart it with `hekaton down` and `hekaton up --detach`"
        )
    url = state.exports.get("gateway_url")
    if not url:
        raise LoadError(
            "the local stack runs without the cluster's gateway: restart it with `hekaton down` "
            "and `hekaton up --detach` (without --only)"
        )
    require_loopback(url)
    try:
        status, _ = _get(url, "/healthz", timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise LoadError(
            f"the gateway at {url} does not answer ({exc}): is the stack still running? "
            "See `hekaton ps`"
        ) from exc
    if status != 200:
        raise LoadError(f"the gateway at {url} answers /healthz with {status}: see `hekaton ps`")
    return StackGateway(url, state.domain, state.exports.get("status_url"))


def _get(url: str, path: str, timeout: float) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass(frozen=True)
class LoadConfig:
    """What to send, where, how fast and for how long. Validated on creation (LoadError)."""

    gateway_url: str
    host: str
    bodies: tuple[bytes, ...] = field(default_factory=iris_bodies)
    rps: float = 10.0
    duration: float = 10.0
    max_requests: int = DEFAULT_MAX_REQUESTS
    seed: int = 0
    path: str = "/predict"
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 8
    timeout: float = 10.0
    stop_on_route_miss: bool = True  # the service has no route: more requests tell nothing new

    def __post_init__(self) -> None:
        require_loopback(self.gateway_url)
        if not (math.isfinite(self.rps) and 0 < self.rps <= MAX_RPS):
            raise LoadError(f"rate must be above 0 and at most {MAX_RPS:g} requests/s")
        if not (math.isfinite(self.duration) and 0 < self.duration <= MAX_DURATION_SECONDS):
            raise LoadError(f"duration must be above 0 and at most {MAX_DURATION_SECONDS:g} s")
        if not 1 <= self.max_requests <= MAX_REQUESTS:
            raise LoadError(f"the request bound must be between 1 and {MAX_REQUESTS}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise LoadError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise LoadError("the request timeout must be above 0 s")
        if not self.bodies:
            raise LoadError("give at least one request body")
        if not self.path.startswith("/"):
            raise LoadError(f"the path must start with '/', got {self.path!r}")
        if any(name.lower() in ("host", "content-length") for name in self.headers):
            raise LoadError("Host and Content-Length are set by the load generator")

    def arrivals(self) -> Iterator[Arrival]:
        """This run's schedule."""
        return arrivals(
            self.rps, self.duration, self.seed, self.max_requests, body_count=len(self.bodies)
        )

    def planned(self) -> int:
        """How many requests the whole run sends (deterministic for the seed)."""
        return sum(1 for _ in self.arrivals())


def config_for_service(
    service: str,
    namespace: str,
    *,
    state_dir: Path | None = None,
    **options: Any,
) -> LoadConfig:
    """A LoadConfig for a service's main URL on the running local stack (LoadError if none)."""
    gateway = stack_gateway(state_dir)
    return LoadConfig(
        gateway_url=gateway.url, host=service_host(service, namespace, gateway.domain), **options
    )


@dataclass(frozen=True)
class Arrival:
    """One scheduled request: its number, when (seconds after the start), which body."""

    index: int
    at: float
    body: int


def arrivals(
    rps: float, duration: float, seed: int, max_requests: int, *, body_count: int = 1
) -> Iterator[Arrival]:
    """Poisson arrivals at `rps` in [0, duration), at most `max_requests` of them.

    Times and bodies come from two generators seeded from `seed`, so the times do not depend
    on how many bodies there are.
    """
    times, bodies = random.Random(seed), random.Random(f"bodies-{seed}")
    at = 0.0
    for index in range(max_requests):
        at += times.expovariate(rps)
        if at >= duration:
            return
        yield Arrival(index, at, bodies.randrange(body_count))


@dataclass(frozen=True)
class Percentiles:
    """Latency figures in milliseconds."""

    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Percentiles | None:
        """Nearest-rank percentiles; None without samples."""
        if not samples:
            return None
        ordered = sorted(samples)

        def rank(q: float) -> float:
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

        return cls(rank(0.50), rank(0.90), rank(0.99), ordered[-1])


@dataclass(frozen=True)
class LoadReport:
    """What a run sent and what came back, so far or in the end."""

    url: str
    host: str
    path: str
    rps: float
    duration: float
    seed: int
    max_requests: int
    planned: int  # requests in the whole schedule
    scheduled: int  # arrivals whose time has come
    sent: int  # requests sent (answered or failed)
    unsent: int  # scheduled but never sent: the run was stopped, or ran past its deadline
    by_status: Mapping[int, int]
    errors: Mapping[str, int]  # requests without an HTTP answer, by kind
    route_misses: int  # gateway 404s: no Knative Service answers to the host
    by_version: Mapping[str, Mapping[int, int]]  # model_version in the answer -> status -> n
    elapsed: float
    latency_ms: Percentiles | None  # answered requests, from send to the full answer
    max_lag_ms: float  # the latest a request left after its scheduled time
    state: str  # running, completed, max_requests, stopped, no_route, deadline
    finished: bool

    @property
    def answered(self) -> int:
        """Requests with an HTTP answer."""
        return sum(self.by_status.values())

    @property
    def expected(self) -> float:
        """The mean number of requests of the schedule: rate x duration, within the bound."""
        return min(self.rps * self.duration, float(self.max_requests))

    @property
    def achieved_rps(self) -> float:
        """Requests sent per second of the schedule that has elapsed."""
        window = min(self.elapsed, self.duration)
        return self.sent / window if window > 0 else 0.0

    def version_counts(self) -> dict[str, int]:
        """Answers per model_version: the split as users see it."""
        return {version: sum(codes.values()) for version, codes in self.by_version.items()}

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (status codes as strings)."""
        latency = self.latency_ms
        return {
            "url": self.url,
            "host": self.host,
            "path": self.path,
            "rps": self.rps,
            "duration": self.duration,
            "seed": self.seed,
            "max_requests": self.max_requests,
            "state": self.state,
            "finished": self.finished,
            "expected": self.expected,
            "planned": self.planned,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "unsent": self.unsent,
            "answered": self.answered,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "errors": dict(sorted(self.errors.items())),
            "route_misses": self.route_misses,
            "by_version": {
                version: {str(code): n for code, n in sorted(codes.items())}
                for version, codes in sorted(self.by_version.items())
            },
            "version_counts": dict(sorted(self.version_counts().items())),
            "elapsed_seconds": round(self.elapsed, 3),
            "achieved_rps": round(self.achieved_rps, 3),
            "latency_ms": None
            if latency is None
            else {
                "p50": round(latency.p50, 3),
                "p90": round(latency.p90, 3),
                "p99": round(latency.p99, 3),
                "max": round(latency.max, 3),
            },
            "max_lag_ms": round(self.max_lag_ms, 3),
        }


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes


class _Tally:
    """The run's counters, shared by the workers (one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scheduled = 0
        self.sent = 0
        self.unsent = 0
        self.by_status: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.route_misses = 0
        self.by_version: dict[str, Counter[int]] = {}
        self.latencies: list[float] = []
        self.max_lag = 0.0


class LoadRun:
    """One load run in background threads: ``start()``, then ``wait()`` or ``stop()``; ``report()``."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self._planned = config.planned()
        self._tally = _Tally()
        self._queue: queue.SimpleQueue[Arrival | None] = queue.SimpleQueue()
        self._abort = threading.Event()
        self._deadline = 0.0
        self._done = threading.Event()
        self._state = "running"
        self._started: float | None = None
        self._ended: float | None = None
        self._threads: list[threading.Thread] = []
        parts = urlsplit(config.gateway_url)
        self._address = (parts.hostname or "127.0.0.1", int(parts.port or 80))
        self._headers = {"Content-Type": "application/json", **config.headers}

    def start(self) -> LoadRun:
        """Start sending (once); returns self."""
        if self._started is not None:
            return self
        self._started = time.monotonic()
        # Past this, nothing more is sent: the schedule's end plus one request timeout.
        self._deadline = self._started + self.config.duration + self.config.timeout
        workers = [
            threading.Thread(target=self._work, name=f"load-worker-{i}", daemon=True)
            for i in range(self.config.concurrency)
        ]
        self._threads = [threading.Thread(target=self._dispatch, name="load-dispatch", daemon=True)]
        self._threads += workers
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._finish, name="load-finish", daemon=True).start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (True), or `timeout` seconds passed (False)."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        """Whether the run has ended."""
        return self._done.is_set()

    def stop(self, timeout: float | None = None) -> LoadReport:
        """End the run now: requests in flight finish, none are started; the final report."""
        self._end("stopped")
        if self._started is not None:
            self._done.wait(self.config.timeout + 5 if timeout is None else timeout)
        else:
            self._done.set()
        return self.report()

    def __enter__(self) -> LoadRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def report(self) -> LoadReport:
        """The figures so far (final once the run has ended)."""
        config, tally = self.config, self._tally
        now = time.monotonic()
        started = self._started if self._started is not None else now
        ended = self._ended if self._ended is not None else now
        with tally.lock:
            return LoadReport(
                url=config.gateway_url + config.path,
                host=config.host,
                path=config.path,
                rps=config.rps,
                duration=config.duration,
                seed=config.seed,
                max_requests=config.max_requests,
                planned=self._planned,
                scheduled=tally.scheduled,
                sent=tally.sent,
                unsent=tally.unsent,
                by_status=dict(tally.by_status),
                errors=dict(tally.errors),
                route_misses=tally.route_misses,
                by_version={v: dict(codes) for v, codes in tally.by_version.items()},
                elapsed=max(0.0, ended - started),
                latency_ms=Percentiles.of(tally.latencies),
                max_lag_ms=tally.max_lag * 1000,
                state=self._state,
                finished=self._done.is_set(),
            )

    # -- threads ------------------------------------------------------------------------

    def _end(self, state: str, *, abort: bool = True) -> None:
        """Record why the run ends (the first reason wins); `abort`: send nothing more."""
        with self._tally.lock:
            if self._state == "running":
                self._state = state
        if abort:
            self._abort.set()

    def _dispatch(self) -> None:
        assert self._started is not None
        count = 0
        try:
            for arrival in self.config.arrivals():
                delay = self._started + arrival.at - time.monotonic()
                if self._abort.wait(delay) if delay > 0 else self._abort.is_set():
                    return
                with self._tally.lock:
                    self._tally.scheduled += 1
                self._queue.put(arrival)
                count += 1
            # The queued requests still go out: the schedule is complete, not aborted.
            self._end(
                "max_requests" if count >= self.config.max_requests else "completed", abort=False
            )
        finally:
            for _ in range(self.config.concurrency):
                self._queue.put(None)

    def _finish(self) -> None:
        for thread in self._threads:
            thread.join()
        self._ended = time.monotonic()
        self._done.set()

    def _work(self) -> None:
        connection: http.client.HTTPConnection | None = None
        try:
            while (arrival := self._queue.get()) is not None:
                if self._abort.is_set():
                    self._count_unsent()
                    continue
                if time.monotonic() > self._deadline:
                    self._end("deadline")
                    self._count_unsent()
                    continue
                connection = self._send(connection, arrival)
        finally:
            if connection is not None:
                connection.close()

    def _count_unsent(self) -> None:
        with self._tally.lock:
            self._tally.unsent += 1

    def _send(
        self, connection: http.client.HTTPConnection | None, arrival: Arrival
    ) -> http.client.HTTPConnection | None:
        """Send one request and count its outcome; returns the connection to reuse, if any."""
        assert self._started is not None
        body = self.config.bodies[arrival.body]
        began = time.monotonic()
        lag = began - (self._started + arrival.at)
        try:
            answer, connection = self._exchange(connection, body)
        except (OSError, http.client.HTTPException) as exc:
            if connection is not None:
                connection.close()
            self._count(lag, error=_error_kind(exc))
            return None
        self._count(lag, answer=answer, latency=time.monotonic() - began)
        return connection

    def _exchange(
        self, connection: http.client.HTTPConnection | None, body: bytes
    ) -> tuple[_Answer, http.client.HTTPConnection | None]:
        """One request; a kept-alive connection the gateway already closed is retried once."""
        reused = connection is not None
        if connection is None:
            connection = self._connect()
        try:
            return self._roundtrip(connection, body)
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            connection.close()
            if not reused:
                raise
        # The gateway closed an idle connection before reading the request: send it again.
        return self._roundtrip(self._connect(), body)

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self._address
        return http.client.HTTPConnection(host, port, timeout=self.config.timeout)

    def _roundtrip(
        self, connection: http.client.HTTPConnection, body: bytes
    ) -> tuple[_Answer, http.client.HTTPConnection | None]:
        config = self.config
        connection.putrequest(config.method, config.path, skip_host=True)
        connection.putheader("Host", config.host)
        for name, value in self._headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        if response.will_close:
            connection.close()
            return _Answer(response.status, data), None
        return _Answer(response.status, data), connection

    def _count(
        self,
        lag: float,
        *,
        answer: _Answer | None = None,
        latency: float = 0.0,
        error: str | None = None,
    ) -> None:
        version = _model_version(answer.body) if answer is not None else None
        route_miss = (
            answer is not None
            and answer.status == 404
            and answer.body.startswith(ROUTE_MISS_PREFIX)
        )
        tally = self._tally
        with tally.lock:
            tally.sent += 1
            tally.max_lag = max(tally.max_lag, lag)
            if answer is None:
                tally.errors[error or "error"] += 1
            else:
                tally.by_status[answer.status] += 1
                tally.latencies.append(latency * 1000)
                if version is not None:
                    tally.by_version.setdefault(version, Counter())[answer.status] += 1
                tally.route_misses += route_miss
        if route_miss and self.config.stop_on_route_miss:
            self._end("no_route")


def _model_version(body: bytes) -> str | None:
    """`model_version` from a JSON object answer, if it carries one."""
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    version = document.get("model_version") if isinstance(document, dict) else None
    return str(version) if version is not None else None


def _error_kind(exc: BaseException) -> str:
    """A short name for a request that got no HTTP answer."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected):
        return "connection closed"
    return type(exc).__name__


def run_load(config: LoadConfig) -> LoadReport:
    """Run to the end in the calling thread's wait; Ctrl-C stops it and returns the report so far."""
    run = LoadRun(config).start()
    try:
        run.wait()
    except KeyboardInterrupt:
        return run.stop()
    return run.report()
