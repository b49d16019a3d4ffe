"""A Slack-style webhook on loopback for the e2e stack's notify sink: it records every POST and can be
told to answer 200, to fail with 500, or to hang (hold each request unanswered until released)."""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal

Mode = Literal["answer", "fail", "hang"]
# A hanging request is released after this long at most, so the server can always shut down.
MAX_HOLD_SECONDS = 60.0


@dataclass(frozen=True)
class Post:
    """One POST the webhook received and how it was answered (None: left hanging)."""

    text: str
    mode: Mode
    status: int | None


class WebhookReceiver:
    """The webhook server (a context manager); `url` carries a random secret path, as Slack's do."""

    def __init__(self) -> None:
        self.secret = secrets.token_urlsafe(18)
        self._lock = threading.Lock()
        self._posts: list[Post] = []
        self._mode: Mode = "answer"
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The webhook URL the sink is given (the secret: it must never be logged)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/services/hooks/{self.secret}"

    def set_mode(self, mode: Mode) -> None:
        """How the following requests are answered; leaving `hang` releases the held ones."""
        with self._lock:
            self._mode = mode
            if mode == "hang":
                self._release.clear()
            else:
                self._release.set()

    def posts(self, containing: str = "") -> list[Post]:
        """Every POST received so far (whose text contains `containing`), in arrival order."""
        with self._lock:
            return [p for p in self._posts if containing in p.text]

    def __enter__(self) -> WebhookReceiver:
        self._release.set()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def _record(self, text: str, mode: Mode, status: int | None) -> None:
        with self._lock:
            self._posts.append(Post(text, mode, status))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    text = str(json.loads(body).get("text", ""))
                except (ValueError, AttributeError):
                    text = body.decode(errors="replace")
                if self.path != f"/services/hooks/{receiver.secret}":
                    self._answer(404)
                    return
                with receiver._lock:
                    mode = receiver._mode
                if mode == "hang":
                    receiver._record(text, mode, None)
                    # The scenario's input: the webhook does not answer (until released).
                    receiver._release.wait(MAX_HOLD_SECONDS)
                    return  # the connection closes unanswered
                status = 200 if mode == "answer" else 500
                receiver._record(text, mode, status)
                self._answer(status)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: the test reads `posts`

        return Handler
