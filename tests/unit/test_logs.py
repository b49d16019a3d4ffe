"""Cloud Logging's structured JSON: severity, trace, span, labels, source location; secrets redacted."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from events import trace
from events.pubsub import PUBSUB_EVENT_TYPE
from events.steps import StepEvent, StepType
from functions._runtime import handle_pubsub
from shared import logs
from tests.fakes import World

PROJECT = "my-proj-1"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Lines(logging.Handler):
    """Collects what the JSON formatter renders, parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logs.JsonFormatter(PROJECT))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture()
def lines() -> Iterator[list[dict[str, Any]]]:
    handler = Lines()
    root = logging.getLogger("hekaton")
    before = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


def test_a_line_has_severity_message_source_and_the_scope_labels(
    lines: list[dict[str, Any]],
) -> None:
    with logs.scope(function="deploy", service="iris", rollout=None):
        logs.get_logger("deploy").warning("revision %s not ready", "iris-abc", extra={"n": 3})
    (line,) = lines
    assert line["severity"] == "WARNING"
    assert line["message"] == "revision iris-abc not ready"
    assert line["n"] == 3
    assert line[logs.LABELS_KEY] == {"function": "deploy", "service": "iris"}
    source = line[logs.SOURCE_KEY]
    assert source["file"].endswith("test_logs.py") and source["function"].startswith("test_a_line")
    assert int(source["line"]) > 0
    assert logs.TRACE_KEY not in line  # no rollout, no event trace: no trace to claim


def test_the_events_traceparent_gives_trace_and_span(lines: list[dict[str, Any]]) -> None:
    with logs.scope(trace_context=trace.parse(TRACEPARENT), function="tick"):
        logs.get_logger("tick").info("swept")
    assert lines[0][logs.TRACE_KEY] == f"projects/{PROJECT}/traces/0af7651916cd43dd8448eb211c80319c"
    assert lines[0][logs.SPAN_KEY] == "b7ad6b7169203331"


def test_a_rollout_line_is_in_the_rollouts_trace_whatever_the_event_said(
    lines: list[dict[str, Any]],
) -> None:
    rollout_trace = trace.for_rollout("iris-r1")
    with logs.scope(trace_context=trace.parse(TRACEPARENT), function="ingest"):
        logs.get_logger("ingest").info("started", extra={"rollout": "iris-r1"})
    with logs.scope(trace_context=rollout_trace, function="shift", rollout="iris-r1"):
        logs.get_logger("shift").info("at 10%")
    traces = {line[logs.TRACE_KEY] for line in lines}
    assert traces == {f"projects/{PROJECT}/traces/{trace.rollout_trace_id('iris-r1')}"}
    assert logs.SPAN_KEY not in lines[0]  # the event's span belongs to another trace
    assert lines[1][logs.SPAN_KEY] == rollout_trace.span_id
    assert [line[logs.LABELS_KEY]["rollout"] for line in lines] == ["iris-r1", "iris-r1"]


def test_annotate_adds_labels_to_the_rest_of_the_scope(lines: list[dict[str, Any]]) -> None:
    with logs.scope(function="ingest"):
        logs.annotate(rollout="iris-r2", service=None)
        logs.get_logger("ingest").info("x")
    logs.get_logger("ingest").info("outside")
    assert lines[0][logs.LABELS_KEY] == {"function": "ingest", "rollout": "iris-r2"}
    assert logs.LABELS_KEY not in lines[1]


def test_an_error_carries_its_stack_trace_in_the_message(lines: list[dict[str, Any]]) -> None:
    try:
        raise RuntimeError("firestore said no")
    except RuntimeError:
        logs.get_logger("x").exception("deploy failed; check Firestore")
    assert lines[0]["severity"] == "ERROR"
    assert lines[0]["message"].startswith("deploy failed; check Firestore\nTraceback")
    assert "RuntimeError: firestore said no" in lines[0]["message"]


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA"
SECRETS = [
    (f"Authorization: Bearer {JWT}", "Authorization: Bearer [redacted]"),
    (f"token {JWT} refused", "token [redacted] refused"),
    ("posting to https://hooks.slack.com/services/T0/B0/XyZsecret", "https://hooks.slack.com/"),
    ("https://alerts.example.com/webhook/abcdef123456", "https://alerts.example.com/webhook/"),
    ("https://bob:hunter22@db.example.com/x", "https://[redacted]@db.example.com/x"),
    ("GET /callback?user=al&token=s3cr3tvalue&x=1", "?user=al&token=[redacted]&x=1"),
]


@pytest.mark.parametrize(("text", "shown"), SECRETS)
def test_secrets_never_reach_a_line(lines: list[dict[str, Any]], text: str, shown: str) -> None:
    logs.get_logger("x").info("said %s", text, extra={"detail": {"nested": [text]}, "raw": text})
    rendered = json.dumps(lines[0])
    assert shown in lines[0]["message"]
    for secret in ("c2lnbmF0dXJlLXNlY3JldA", "XyZsecret", "abcdef123456", "hunter22", "s3cr3t"):
        assert secret not in rendered
    assert lines[0]["detail"] == {"nested": [lines[0]["raw"]]}


def test_a_registered_secret_is_redacted_exactly(lines: list[dict[str, Any]]) -> None:
    logs.add_secret("https://chat.internal/incoming/opaque-path-42")
    logs.get_logger("x").error("post to https://chat.internal/incoming/opaque-path-42 failed")
    assert "opaque-path-42" not in json.dumps(lines[0])
    assert lines[0]["message"] == "post to [redacted] failed"


def test_the_text_format_is_redacted_too() -> None:
    record = logging.LogRecord("hekaton.x", logging.INFO, __file__, 1, f"Bearer {JWT}", None, None)
    assert logs.TextFormatter().format(record) == "INFO Bearer [redacted]"


# --- trace context -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    ],
)
def test_a_bad_traceparent_is_ignored(value: str | None) -> None:
    assert trace.parse(value) is None


def test_a_rollouts_trace_is_stable_and_its_spans_fresh() -> None:
    first, second = trace.for_rollout("iris-r1"), trace.for_rollout("iris-r1")
    assert first.trace_id == second.trace_id != trace.for_rollout("iris-r2").trace_id
    assert first.span_id != second.span_id
    assert trace.parse(first.header()) == first


def test_a_step_event_carries_the_traceparent_extension() -> None:
    event = StepEvent(StepType.SHIFT, "iris-r1", "iris", "SHIFTING", 1, "m-1")
    header = trace.for_rollout("iris-r1").header()
    assert json.loads(event.to_json("shift", traceparent=header))["traceparent"] == header
    assert "traceparent" not in json.loads(event.to_json("shift"))


# --- the functions' runtime -----------------------------------------------------------------------


def _event(attributes: dict[str, str], extension: str | None = None) -> CloudEvent:
    envelope = {
        "message": {
            "data": base64.b64encode(b"{}").decode(),
            "messageId": "m-7",
            "attributes": attributes,
        },
        "subscription": "projects/p/subscriptions/s",
    }
    ce = {
        "type": PUBSUB_EVENT_TYPE,
        "source": "//pubsub.googleapis.com/projects/p/topics/hekaton-shift",
        "id": "m-7",
        "specversion": "1.0",
    }
    if extension:
        ce["traceparent"] = extension
    return CloudEvent(ce, envelope)


def test_the_runtime_logs_each_message_in_its_trace_with_its_labels(
    lines: list[dict[str, Any]],
) -> None:
    world = World.create()
    header = trace.for_rollout("iris-r9").header()
    attributes = {"rollout": "iris-r9", "service": "iris", trace.ATTRIBUTE: header}
    handle_pubsub(_event(attributes), "shift", lambda d, m: None, dependencies=world.deps)
    (line,) = lines
    assert line[logs.TRACE_KEY].endswith(trace.rollout_trace_id("iris-r9"))
    assert line[logs.SPAN_KEY] == header.split("-")[2]
    assert line[logs.LABELS_KEY] == {"function": "shift", "rollout": "iris-r9", "service": "iris"}


def test_without_our_attribute_the_cloudevents_traceparent_is_used(
    lines: list[dict[str, Any]],
) -> None:
    handle_pubsub(
        _event({}, TRACEPARENT), "tick", lambda d, m: None, dependencies=World.create().deps
    )
    assert lines[0][logs.TRACE_KEY].endswith("0af7651916cd43dd8448eb211c80319c")


def test_an_unexpected_error_is_logged_at_error_with_what_to_check_and_retried(
    lines: list[dict[str, Any]],
) -> None:
    def broken(_d: Any, _m: Any) -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        handle_pubsub(
            _event({"rollout": "iris-r3"}), "deploy", broken, dependencies=World.create().deps
        )
    (line,) = lines
    assert line["severity"] == "ERROR"
    assert "Pub/Sub will redeliver it. Check" in line["message"] and "KeyError" in line["message"]
    assert line[logs.LABELS_KEY]["rollout"] == "iris-r3"


def test_an_api_request_logs_in_cloud_runs_trace_with_its_function(
    lines: list[dict[str, Any]],
) -> None:
    from shared.api.http import ApiRequest
    from shared.api.serve import public_paths, serve

    request = ApiRequest(
        method="GET",
        path="/services",
        headers={"traceparent": TRACEPARENT, "authorization": f"Bearer {JWT}"},
    )
    answer = serve(
        World.create().deps, request, lambda *_: None, public_paths("read"), function="status"
    )
    assert answer.status == 401
    (line,) = lines
    assert line[logs.LABELS_KEY] == {"function": "status"}
    assert line[logs.TRACE_KEY].endswith("0af7651916cd43dd8448eb211c80319c")
    assert JWT not in json.dumps(line)
