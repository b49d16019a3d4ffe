"""The delivery proxy: Pub/Sub's pushes pass through it on their way to the functions, and some go wrong.

``python -m local.faults.delivery --spec FILE --counts FILE --port N --route deploy=http://…``.
Push endpoints point at ``http://proxy/<function>/projects/P/topics/T``; the proxy forwards to
that function's URL. With the spec's probabilities (one seeded stream) a push is

- **duplicated**: the function gets it twice at once (the answer of the first goes back);
- **reordered**: held until a later push to the same function has gone through (or hold_seconds);
- **delayed**: by up to max_delay_seconds;
- **failed**: answered 500 or 503 — before it reaches the function, or after the function handled
  it (the acknowledgement is lost) — so Pub/Sub delivers it again.

These are what at-least-once push delivery does to a subscriber in production, made frequent.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.faults.counts import Dice, FaultCounts
from local.faults.spec import DeliveryFaults, injector_parser, read_spec

_FORWARD_TIMEOUT_SECONDS = 600.0  # longer than any step: a slow function is not a proxy failure
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


@dataclass(frozen=True)
class DeliveryPlan:
    """What the proxy does to one push."""

    delay_seconds: float = 0.0
    hold: bool = False
    duplicate: bool = False
    fail_code: int | None = None  # answer this instead of the function's answer
    fail_after_forward: bool = False  # the function handled it, its acknowledgement is lost

    def kinds(self) -> list[str]:
        """The fault kinds this plan injects, for the counts."""
        kinds = ["delay"] if self.delay_seconds else []
        kinds += ["reorder"] if self.hold else []
        kinds += ["duplicate"] if self.duplicate else []
        if self.fail_code is not None:
            kinds.append("fail_after" if self.fail_after_forward else "fail_before")
        return kinds


def plan_delivery(dice: Dice, faults: DeliveryFaults) -> DeliveryPlan:
    """Roll every fault for one push (always the same number of draws, so a seed replays)."""
    delay, hold, duplicate, fail = (
        dice.hit(faults.delay),
        dice.hit(faults.reorder),
        dice.hit(faults.duplicate),
        dice.hit(faults.fail),
    )
    seconds = dice.uniform(0.05, faults.max_delay_seconds)
    code = dice.choice((500, 503))
    after = dice.hit(0.5)
    return DeliveryPlan(
        delay_seconds=seconds if delay else 0.0,
        hold=hold,
        duplicate=duplicate and not fail,
        fail_code=code if fail else None,
        fail_after_forward=after and fail,
    )


class _Holds:
    """Pushes held back per function, released once a later push to it has gone through."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[threading.Event]] = {}

    def hold(self, route: str, seconds: float) -> None:
        released = threading.Event()
        with self._lock:
            self._waiting.setdefault(route, []).append(released)
        released.wait(seconds)
        with self._lock:
            if released in self._waiting.get(route, []):
                self._waiting[route].remove(released)

    def passed(self, route: str) -> None:
        with self._lock:
            for released in self._waiting.pop(route, []):
                released.set()


@dataclass(frozen=True)
class Answer:
    """A response to send back to Pub/Sub."""

    status: int
    body: bytes
    content_type: str = "text/plain"


def forward(base_url: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST the push to the function; a function that does not answer is a 502 (Pub/Sub retries)."""
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=_FORWARD_TIMEOUT_SECONDS
    )
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return Answer(
            response.status,
            response.read(),
            response.getheader("Content-Type", "application/octet-stream"),
        )
    except (OSError, http.client.HTTPException) as exc:
        # A crashed function (restarting) looks like this: exactly the redelivery case.
        return Answer(502, f"function unreachable: {exc}".encode())
    finally:
        conn.close()


class DeliveryProxy:
    """Routes pushes to functions, applying planned faults; counts what it did."""

    def __init__(
        self, routes: dict[str, str], faults: DeliveryFaults, dice: Dice, counts: FaultCounts
    ) -> None:
        self.routes = routes
        self.faults = faults
        self.dice = dice
        self.counts = counts
        self.holds = _Holds()

    def deliver(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        """Handle one push to `/<function>/<rest>`."""
        function, _, rest = path.lstrip("/").partition("/")
        base = self.routes.get(function)
        if base is None:
            return Answer(404, f"no function {function!r} behind this proxy".encode())
        plan = plan_delivery(self.dice, self.faults)
        for kind in plan.kinds():
            self.counts.add(kind)
        self.counts.add("pushes")
        if plan.fail_code is not None and not plan.fail_after_forward:
            return Answer(plan.fail_code, b"injected failure before delivery")
        if plan.delay_seconds:
            threading.Event().wait(plan.delay_seconds)  # the injected delay itself
        if plan.hold:
            self.holds.hold(function, self.faults.hold_seconds)
        target = "/" + rest
        if plan.duplicate:
            copy = threading.Thread(target=forward, args=(base, target, body, headers), daemon=True)
            copy.start()
        answer = forward(base, target, body, headers)
        self.holds.passed(function)
        if plan.fail_code is not None:
            return Answer(plan.fail_code, b"injected failure after delivery (ack lost)")
        return answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the counts file says what happened; a line per push would drown the log

    def do_GET(self) -> None:
        self._send(Answer(200, b"ok") if self.path == "/healthz" else Answer(404, b"POST pushes"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        self._send(self.server.proxy.deliver(self.path, body, headers))

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], proxy: DeliveryProxy) -> None:
        super().__init__(address, _Handler)
        self.proxy = proxy


def main(argv: list[str] | None = None) -> int:
    """Serve until killed."""
    parser = injector_parser("python -m local.faults.delivery", __doc__)
    parser.add_argument("--route", action="append", default=[], help="FUNCTION=URL")
    args = parser.parse_args(argv)
    spec = read_spec(args.spec)
    routes = dict(route.split("=", 1) for route in args.route)
    proxy = DeliveryProxy(
        routes,
        spec.delivery or DeliveryFaults(),
        Dice(spec.seed, "delivery"),
        FaultCounts(args.counts),
    )
    _Server((args.host, args.port), proxy).serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
