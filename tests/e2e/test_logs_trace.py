"""One rollout on the local stack, followed in the functions' JSON logs as Logs Explorer would.

Every line any function logs about the rollout carries its label and the same Cloud Logging trace
(`projects/P/traces/<id>`), and the step functions' lines carry the span of the step event that
triggered them: the traceparent travelled with each event through Pub/Sub.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from events import trace
from functions.manifest import FUNCTIONS
from shared import logs
from tests.e2e.specs import e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris-traced"
REPOSITORY = e2e_repository("traced")
STEP_FUNCTIONS = {"deploy", "wait-ready", "validate", "shift", "promote"}


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # functions-framework's and gunicorn's own output
        if isinstance(line, dict) and "severity" in line:
            lines.append(line)
    return lines


def test_every_functions_lines_for_a_rollout_share_its_trace_and_label(
    e2e_stack: E2EStack,
) -> None:
    stack = e2e_stack
    stack.register(e2e_spec(SERVICE, REPOSITORY))
    v1 = stack.push(f"{REPOSITORY}:v1")
    assert stack.follow(SERVICE, v1.rollout_id(SERVICE))["phase"] == "PROMOTED"
    v2 = stack.push(f"{REPOSITORY}:v2")  # steps 10 -> 50 -> 100 %: every step function runs
    rollout = v2.rollout_id(SERVICE)
    assert stack.follow(SERVICE, rollout)["phase"] == "PROMOTED"

    expected = f"projects/{stack.state.project}/traces/{trace.rollout_trace_id(rollout)}"
    about: dict[str, list[dict[str, Any]]] = {}
    for function in FUNCTIONS:
        for line in _json_lines(stack.log_text(f"fn-{function.name}")):
            labels = line.get(logs.LABELS_KEY, {})
            if labels.get("rollout") == rollout or rollout in line["message"]:
                about.setdefault(function.name, []).append(line)

    assert {"ingest"} | STEP_FUNCTIONS <= set(about), f"functions that logged it: {sorted(about)}"
    for function, lines in about.items():
        for line in lines:
            assert line.get(logs.TRACE_KEY) == expected, (function, line)
            assert line[logs.LABELS_KEY]["rollout"] == rollout, (function, line)
            assert line[logs.LABELS_KEY].get("service") == SERVICE, (function, line)
            assert line[logs.SOURCE_KEY]["file"].endswith(".py")
    for function in STEP_FUNCTIONS:
        # The span came with the step event: its traceparent attribute, published by the engine.
        spans = {line.get(logs.SPAN_KEY) for line in about[function]}
        assert spans and None not in spans, (function, about[function])
