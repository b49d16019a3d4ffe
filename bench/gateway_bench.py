"""Measure what the local gateway adds: latency and throughput, direct to iris vs through it.

Run from the repository root:  .venv/bin/python -m bench.gateway_bench [--requests N]

The gateway and the model run in a child process (as in the local stack), so the load
generator does not share a GIL with them. Loopback only; a bounded number of requests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE = "us-docker.pkg.dev/demo/models/iris:v1"
HOST = "iris.bench.example.com"
BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()


def serve() -> None:
    """Child mode: run iris v1 behind a gateway, print their addresses, stop when stdin closes."""
    from local.kube.catalog import ImageCatalog
    from local.kube.contracts import RevisionPhase, RevisionSpec, RouteTarget
    from local.kube.gateway import Gateway
    from local.kube.runtime import ProcessRuntime

    runtime = ProcessRuntime(ImageCatalog.load(REPO_ROOT / "examples" / "catalog.yaml"))
    gateway = Gateway("127.0.0.1", 0, runtime, "example.com")
    try:
        runtime.ensure_running(RevisionSpec("bench", "iris", "iris-v1", IMAGE))
        deadline = time.monotonic() + 30
        while (state := runtime.state("bench", "iris-v1")) is None or (
            state.phase is RevisionPhase.PENDING and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        if state.phase is not RevisionPhase.READY or state.port is None:
            raise SystemExit(f"iris v1 did not become ready: {state}")
        gateway.set_routes("bench", "iris", [RouteTarget("iris-v1", 100)])
        gateway.start()
        print(json.dumps({"gateway": gateway.url, "model_port": state.port}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    finally:
        gateway.stop()
        runtime.stop_all()


def make_sender(port: int, host: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """A function sending one prediction over a keep-alive connection, and its closer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": host, "Content-Type": "application/json"}

    def send() -> None:
        connection.request("POST", "/predict", body=BODY, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"unexpected status {response.status}")

    return send, connection.close


def latencies_ms(port: int, host: str, count: int) -> list[float]:
    """Sequential requests over one connection; each one's latency."""
    send, close = make_sender(port, host)
    try:
        for _ in range(min(200, count)):  # warm-up: connections, caches, branch predictors
            send()
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            send()
            samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        close()


def throughput(port: int, host: str, count: int, connections: int) -> float:
    """Requests per second with `connections` concurrent keep-alive clients."""
    per_client = count // connections
    barrier = threading.Barrier(connections + 1)

    def client() -> None:
        send, close = make_sender(port, host)
        try:
            send()
            barrier.wait(timeout=30)
            for _ in range(per_client):
                send()
        finally:
            close()

    with ThreadPoolExecutor(connections) as pool:
        futures = [pool.submit(client) for _ in range(connections)]
        barrier.wait(timeout=30)
        started = time.perf_counter()
        for future in futures:
            future.result(timeout=300)
        elapsed = time.perf_counter() - started
    return per_client * connections / elapsed


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


def main() -> int:
    """Start the child, measure both paths, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per measurement")
    parser.add_argument("--connections", type=int, default=4, help="concurrent clients")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    if not 1 <= args.requests <= 100_000 or not 1 <= args.connections <= 64:
        parser.error("--requests must be 1..100000 and --connections 1..64")

    child = subprocess.Popen(
        [sys.executable, "-m", "bench.gateway_bench", "--serve"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            print("the gateway child process failed to start", file=sys.stderr)
            return 1
        addresses = json.loads(line)
        gateway_port = int(addresses["gateway"].rsplit(":", 1)[1])
        model_port = int(addresses["model_port"])

        direct = latencies_ms(model_port, "localhost", args.requests)
        routed = latencies_ms(gateway_port, HOST, args.requests)
        direct_rps = throughput(model_port, "localhost", args.requests, args.connections)
        routed_rps = throughput(gateway_port, HOST, args.requests, args.connections)
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=15)

    print(f"gateway bench: iris v1, {args.requests} requests per measurement, loopback,")
    print(f"python {sys.version.split()[0]}, gateway and model in a child process\n")
    print(f"{'':34}{'direct':>10}{'gateway':>10}{'added':>10}")
    for label, q in [("sequential latency p50 (ms)", 50), ("sequential latency p99 (ms)", 99)]:
        d, g = percentile(direct, q), percentile(routed, q)
        print(f"{label:34}{d:10.3f}{g:10.3f}{g - d:+10.3f}")
    d, g = statistics.fmean(direct), statistics.fmean(routed)
    print(f"{'sequential latency mean (ms)':34}{d:10.3f}{g:10.3f}{g - d:+10.3f}")
    print(
        f"{f'throughput, {args.connections} connections (req/s)':34}{direct_rps:10.0f}{routed_rps:10.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
