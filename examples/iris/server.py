"""The iris model server: `GET /healthz`, `POST /predict`; listens on 127.0.0.1:$PORT.

Run with `PORT=8080 python -m examples.iris.server` from the repository root.
"""

from __future__ import annotations

import json
import os
import signal
import socketserver
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, ClassVar

from examples.iris.behaviour import BadBehaviour, Behaviour, FaultPlan
from examples.iris.model import BadInput, parse_instances, predict

# Room for hekaton's large-payload smoke request (the seed platform's 1.5 MB request limit).
MAX_BODY_BYTES = 4 << 20


class IrisHandler(BaseHTTPRequestHandler):
    """Answers health checks and predictions as the configured behaviour says."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "iris"
    behaviour: ClassVar[Behaviour] = Behaviour()
    faults: ClassVar[FaultPlan] = FaultPlan(Behaviour())

    def do_GET(self) -> None:
        """Health check; anything else is 404."""
        if self.headers.get("Content-Length", "0") != "0" or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # an unread body must not be parsed as the next request
        if self.path.split("?", 1)[0] == "/healthz":
            self._reply(HTTPStatus.OK, {"status": "ok", "model_version": self.behaviour.version})
        else:
            self._not_found()

    def do_POST(self) -> None:
        """Predictions; anything else is 404."""
        # Consume the body first: answering without reading it would corrupt the next request.
        raw = self._read_body()
        if raw is None:
            return
        if self.path.split("?", 1)[0] != "/predict":
            self._not_found()
            return
        try:
            instances = parse_instances(json.loads(raw))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"body is not JSON: {exc}"})
            return
        except BadInput as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        fault = self.faults.next()
        if fault.delay_seconds:
            time.sleep(fault.delay_seconds)
        version = self.behaviour.version
        if fault.fail:
            self._reply(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "model backend failed (injected fault)", "model_version": version},
            )
            return
        predictions = predict(
            instances,
            label_shift=self.behaviour.label_shift,
            boundary_shift=self.behaviour.boundary_shift,
        )
        self._reply(HTTPStatus.OK, {"predictions": predictions, "model_version": version})

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 4xx (and closing the connection)."""
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_text is None:
            return self._refuse(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
        if not length_text.strip().isdigit():
            return self._refuse(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_text!r}")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            return self._refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body is {length} bytes; at most {MAX_BODY_BYTES} allowed",
            )
        return self.rfile.read(length)

    def _refuse(self, status: HTTPStatus, message: str) -> bytes | None:
        """Answer 4xx and close: the unread body must not be parsed as the next request."""
        self.close_connection = True
        self._reply(status, {"error": message})
        return None

    def _not_found(self) -> None:
        self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route for {self.command} {self.path}"})

    def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if self.close_connection else "")
            + "\r\n"
        )
        # One write: headers and body in separate segments would meet delayed ACKs.
        self.wfile.write(head.encode("latin-1") + body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a model under load must not spend its time writing access logs."""


class IrisServer(ThreadingHTTPServer):
    """A threading HTTP server that binds without a reverse DNS lookup (slow where DNS is)."""

    daemon_threads = True

    def server_bind(self) -> None:
        """Bind, and name the server by its address rather than by DNS."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def make_server(host: str, port: int, behaviour: Behaviour) -> IrisServer:
    """A server (not yet serving) answering as `behaviour` says; port 0 picks a free port."""
    handler = type(
        "ConfiguredIrisHandler",
        (IrisHandler,),
        {"behaviour": behaviour, "faults": FaultPlan(behaviour)},
    )
    return IrisServer((host, port), handler)


def main() -> int:
    """Start serving, or exit non-zero with a message saying why not."""
    try:
        behaviour = Behaviour.from_env(os.environ)
    except BadBehaviour as exc:
        print(f"iris: {exc}", file=sys.stderr)
        return 2
    if behaviour.crash_message:
        print(f"iris {behaviour.version}: {behaviour.crash_message}", file=sys.stderr)
        return 1
    port_text = os.environ.get("PORT", "8080")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        print(f"iris: PORT={port_text!r} is not a TCP port", file=sys.stderr)
        return 2
    host = os.environ.get("IRIS_HOST", "127.0.0.1")
    try:
        server = make_server(host, int(port_text), behaviour)
    except OSError as exc:
        print(f"iris: cannot listen on {host}:{port_text}: {exc}", file=sys.stderr)
        return 1

    def _on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _on_sigterm)
    print(f"iris {behaviour.version} listening on {host}:{port_text}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole foreground process group: stop quietly
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
