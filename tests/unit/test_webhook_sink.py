"""The webhook sink against a real HTTP server on loopback: one line per transition, bounded failures,
and the secret URL never in a log or a record."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from events.pubsub import PubSubMessage
from events.transitions import EVENTS_TOPIC, TransitionEvent
from shared.logs import JsonFormatter
from shared.webhook import WebhookSink, webhook_label
from tests.conftest import LOCAL_CALL_TIMEOUT
from tests.fakes import World

SECRET = "T0000/B0000/s3cr3t-t0k3n"


class Hook(http.server.ThreadingHTTPServer):
    """A webhook that answers `status` (or hangs `hang` seconds first); keeps every body."""

    daemon_threads = True

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        self.hang = 0.0
        self.release = threading.Event()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.bodies.append(json.loads(body))
                if hook.hang:
                    hook.release.wait(hook.hang)
                self.send_response(hook.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/services/{SECRET}"


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Every log line of every logger (httpx and httpcore included, at DEBUG), as JSON."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    handler = Keep(logging.DEBUG)
    ours = logging.getLogger("hekaton")
    # hekaton's logger stops propagating once the functions' logging is configured.
    loggers = [logging.getLogger()] + ([] if ours.propagate else [ours])
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield lines
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


def message(seq: int = 4) -> PubSubMessage:
    event = TransitionEvent(
        service="iris",
        rollout_id="iris-92834a8e835c-1a2b3c",
        seq=seq,
        phase_from="SHIFTING",
        phase_to="PROMOTING",
        outcome="step_passed",
        reason="the last step passed its bake",
        at="2026-03-01T12:00:00+00:00",
        image="us-docker.pkg.dev/acme/models/iris:v2@sha256:92834a8e835c",
        revision="iris-92834a8e835c",
        traffic_percent=50,
        source="shift",
    )
    return PubSubMessage(f"m-{seq}", event.to_json(), topic=EVENTS_TOPIC)


def sink(url: str | None, **options: Any) -> WebhookSink:
    # A generous timeout: a slow answer on a busy machine must not turn into a retry (a second
    # post); the test of the timeout itself sets a short one.
    return WebhookSink(url, **{"timeout": LOCAL_CALL_TIMEOUT, "backoff": (0.01,), **options})


def test_one_line_per_transition_and_redeliveries_are_not_reposted(
    hook: Hook, logs: list[str]
) -> None:
    world = World.create()
    webhook = sink(hook.url)
    assert webhook.handle(world.deps, message()).status == "posted"
    assert webhook.handle(world.deps, message()).status == "repeated"  # Pub/Sub redelivered it
    assert webhook.handle(world.deps, message(5)).status == "posted"
    assert len(hook.bodies) == 2
    assert hook.bodies[0] == {
        "text": "iris: rollout iris-92834a8e835c-1a2b3c #4 SHIFTING → PROMOTING (step_passed) · "
        "iris:v2@sha256:92834a8e835c · traffic 50%: the last step passed its bake"
    }
    assert any(webhook_label(hook.url) in line for line in logs)  # host and hash: fine
    assert not [line for line in logs if SECRET in line]


def test_a_failing_webhook_is_tried_a_bounded_number_of_times_then_recorded(
    hook: Hook, logs: list[str]
) -> None:
    world = World.create()
    hook.status = 503
    delivery = sink(hook.url, attempts=3).handle(world.deps, message())
    assert (delivery.status, delivery.attempts, len(hook.bodies)) == ("ignored", 3, 3)
    (ignored,) = world.store.list_ignored()
    assert ignored.function == "notify" and "refused with HTTP 503" in ignored.reason
    assert "iris-92834a8e835c-1a2b3c-0004" in ignored.reason
    assert SECRET not in ignored.reason and SECRET not in ignored.excerpt
    assert not [line for line in logs if SECRET in line]


def test_a_4xx_is_not_retried(hook: Hook) -> None:
    world = World.create()
    hook.status = 404
    delivery = sink(hook.url, attempts=3).handle(world.deps, message())
    assert (delivery.status, delivery.attempts, len(hook.bodies)) == ("ignored", 1, 1)


def test_a_refused_connection_is_bounded(logs: list[str]) -> None:
    world = World.create()
    with Hook() as closed:
        url = closed.url  # nobody listens once it is closed
    delivery = sink(url, attempts=2).handle(world.deps, message())
    assert (delivery.status, delivery.attempts) == ("ignored", 2)
    assert "ConnectError" in delivery.detail and SECRET not in delivery.detail
    assert not [line for line in logs if SECRET in line]


def test_a_hanging_webhook_is_cut_by_the_timeout(hook: Hook, logs: list[str]) -> None:
    world = World.create()
    hook.hang = 30.0
    started = time.monotonic()
    delivery = sink(hook.url, attempts=2, timeout=0.3).handle(world.deps, message())
    took = time.monotonic() - started
    assert (delivery.status, delivery.attempts) == ("ignored", 2)
    assert "timed out after 0.3s" in delivery.detail
    assert took < 2.0  # two attempts of 0.3 s plus the backoff, never the webhook's 30 s
    assert not [line for line in logs if SECRET in line]


def test_without_a_url_events_are_acknowledged_and_it_says_so_once(
    hook: Hook, logs: list[str]
) -> None:
    world = World.create()
    webhook = WebhookSink.from_env({})
    assert [webhook.handle(world.deps, message(s)).status for s in (1, 2)] == ["disabled"] * 2
    assert sum("HEKATON_NOTIFY_WEBHOOK_URL" in line for line in logs) == 1
    assert not hook.bodies and not world.store.list_ignored()
