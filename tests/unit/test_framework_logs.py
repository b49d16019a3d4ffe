"""A function's logs stay one JSON object per line when an error ends the request.

An exception out of a CloudEvent function is how a retryable error makes Pub/Sub redeliver; Flask
logs each such exception as a multi-line text traceback unless hekaton's handler takes its records.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from events.steps import STEP_TOPICS, StepEvent, StepType
from functions import _runtime
from shared.errors import RetryableError
from shared.logs import JsonFormatter
from tests.fuzz_targets import app, fuzz_world, serving


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """hekaton's logger writing JSON lines to a buffer, and Flask's logger as the framework made it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    hekaton = logging.getLogger("hekaton")
    monkeypatch.setattr(hekaton, "handlers", [handler])
    monkeypatch.setattr(hekaton, "propagate", False)
    monkeypatch.setattr(_runtime, "_framework_logger_adopted", False)
    framework = app("deploy").logger
    kept = (list(framework.handlers), framework.propagate, list(framework.filters))
    yield stream
    framework.handlers, framework.propagate, framework.filters = kept


def deploy_delivery(rollout_id: str) -> dict[str, Any]:
    """A Pub/Sub push of a deploy step event, as the subscription sends it."""
    event = StepEvent(StepType.DEPLOY, rollout_id, "iris", "DEPLOYING", 0, cause="m-0")
    data = base64.b64encode(event.to_json("test")).decode()
    return {
        "message": {"data": data, "messageId": "m-1", "attributes": {}},
        "subscription": "projects/p/subscriptions/hekaton-deploy-push",
    }


def test_a_retryable_error_ends_the_request_without_a_flask_traceback(
    json_logs: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    world, ctx = fuzz_world()

    def unreachable(rollout_id: str) -> Any:
        raise RetryableError("Firestore read got no answer within 5.0s: check that it is up")

    world.store.get_rollout = unreachable  # type: ignore[method-assign]
    with serving(world):
        response = (
            app("deploy")
            .test_client()
            .post(
                f"/projects/p/topics/{STEP_TOPICS[StepType.DEPLOY]}",
                json=deploy_delivery(ctx.rollout_id),
            )
        )

    assert response.status_code == 500  # Pub/Sub redelivers
    # Flask's record of the exception went nowhere: not to its own stderr handler, not upwards.
    assert not [r for r in caplog.records if r.getMessage().startswith("Exception on")]
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert [(line["severity"], line["message"]) for line in lines] == [
        (
            "WARNING",
            "retryable failure, Pub/Sub will redeliver: Firestore read got no answer within "
            "5.0s: check that it is up",
        )
    ]


def test_an_exception_hekaton_did_not_log_is_kept_as_one_json_line(
    json_logs: io.StringIO,
) -> None:
    framework = app("deploy").logger
    with app("deploy").app_context():
        _runtime._framework_logs_as_json()
    try:
        raise ValueError("made before hekaton's handler ran")
    except ValueError:
        framework.exception("Exception on /projects/p/topics/hekaton-deploy [POST]")

    (line,) = json_logs.getvalue().splitlines()
    record = json.loads(line)
    assert record["severity"] == "ERROR"
    assert record["message"].startswith("Exception on /projects/p/topics/hekaton-deploy [POST]\n")
    assert "ValueError: made before hekaton's handler ran" in record["message"]
