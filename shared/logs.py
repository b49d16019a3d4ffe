"""Structured logging that Cloud Logging understands: one JSON object per line, secrets redacted.

Each line has `severity`, `message`, `logging.googleapis.com/sourceLocation`, the labels
`logging.googleapis.com/labels` {function, rollout, service} and, when the line is about a rollout,
`logging.googleapis.com/trace` = `projects/P/traces/<the rollout's trace id>` (see events/trace.py;
otherwise the trace of the event being handled) with `logging.googleapis.com/spanId`. So Logs
Explorer shows one rollout across every function with one filter on its trace (or its label).

`scope(...)` sets the function, the event's trace context and the labels for every line logged
while a message is handled; `annotate(...)` adds labels once they are known (e.g. the rollout
ingest created). Any `extra=` field is kept; `rollout`/`service`/`function` extras become labels.
Text that looks like a secret (bearer tokens, JWTs, URLs' credentials and query strings, values
registered with `add_secret`) is replaced by `[redacted]` in the message and every field.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from events import trace

TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
LABELS_KEY = "logging.googleapis.com/labels"
SOURCE_KEY = "logging.googleapis.com/sourceLocation"
LABEL_FIELDS = ("function", "rollout", "service")
REDACTED = "[redacted]"
MAX_FIELD = 4000  # characters of one rendered field value: a log line must stay small

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Cloud Logging's LogSeverity names for Python's levels.
_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "DEBUG": "DEBUG"}
_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),  # JWTs
    (re.compile(r"(?i)(https?://)[^\s/@\"']+@"), r"\1" + REDACTED + "@"),  # user:password@
    # Webhook URLs carry their secret in the path: keep the host, drop the rest.
    (
        re.compile(
            r"(?i)(https?://(?:hooks\.slack\.com|[^\s/\"']*webhook[^\s/\"']*"
            r"|[^\s/\"']+/(?:webhooks?|hooks|incoming)))/[^\s\"']+"
        ),
        r"\1/" + REDACTED,
    ),
    (
        re.compile(
            r"(?i)([?&](?:token|key|sig|signature|secret|password|access_token)=)[^&\s\"']+"
        ),
        r"\1" + REDACTED,
    ),
)
_secrets: set[str] = set()


@dataclass(frozen=True)
class LogScope:
    """What every line logged while one message is handled carries."""

    trace: trace.TraceContext | None = None
    labels: dict[str, str] = field(default_factory=dict)


_scope: ContextVar[LogScope] = ContextVar("hekaton_log_scope", default=LogScope())  # noqa: B039


@contextlib.contextmanager
def scope(
    *, trace_context: trace.TraceContext | None = None, **labels: str | None
) -> Iterator[None]:
    """Within the block, lines carry this trace context and these labels (None values dropped)."""
    token = _scope.set(
        LogScope(trace=trace_context, labels={k: str(v) for k, v in labels.items() if v})
    )
    try:
        yield
    finally:
        _scope.reset(token)


def annotate(**labels: str | None) -> None:
    """Add labels to the current scope (e.g. the rollout, once known)."""
    current = _scope.get()
    more = {k: str(v) for k, v in labels.items() if v}
    _scope.set(replace(current, labels={**current.labels, **more}))


def add_secret(value: str | None) -> None:
    """Never print this exact value (e.g. a webhook URL from the settings) in a log line."""
    if value and len(value) >= 8:
        _secrets.add(value)


def redact(text: str) -> str:
    """`text` with anything that looks like a credential replaced by `[redacted]`."""
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _clean(value: Any) -> Any:
    """A field value with secrets redacted, strings bounded, containers walked."""
    if isinstance(value, str):
        cleaned = redact(value)
        return cleaned if len(cleaned) <= MAX_FIELD else cleaned[:MAX_FIELD] + "…"
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean(str(value))


class JsonFormatter(logging.Formatter):
    """Formats records as Cloud Logging structured JSON (see the module docstring)."""

    def __init__(self, project: str = "") -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a JSON line."""
        current = _scope.get()
        labels = dict(current.labels)
        payload: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "INFO"),
            "message": redact(record.getMessage()),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key in _RESERVED or key.startswith("_"):
                continue
            if key in LABEL_FIELDS:
                if value:
                    labels[key] = str(value)
            else:
                payload[key] = _clean(value)
        if record.exc_info:
            # Error Reporting groups errors by the stack trace in the message.
            payload["message"] += "\n" + redact(self.formatException(record.exc_info))
        context = current.trace
        trace_id = (
            trace.rollout_trace_id(labels["rollout"])
            if labels.get("rollout")
            else (context.trace_id if context else None)
        )
        if trace_id and self.project:
            payload[TRACE_KEY] = f"projects/{self.project}/traces/{trace_id}"
            if context is not None and context.trace_id == trace_id:
                payload[SPAN_KEY] = context.span_id
        if labels:
            payload[LABELS_KEY] = {k: redact(v)[:200] for k, v in sorted(labels.items())}
        payload[SOURCE_KEY] = {
            "file": record.pathname,
            "line": str(record.lineno),
            "function": record.funcName,
        }
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """`LEVEL message` lines for a terminal, redacted like the JSON ones."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a redacted text line."""
        return redact(super().format(record))


def configure(level: int = logging.INFO, fmt: str = "json", project: str = "") -> None:
    """Send hekaton's logs to stdout, JSON by default (traces under `project`); idempotent."""
    root = logging.getLogger("hekaton")
    if getattr(root, "_hekaton_configured", False):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(project) if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    root._hekaton_configured = True  # type: ignore[attr-defined]


def get_logger(name: str) -> logging.Logger:
    """A logger under the `hekaton` namespace."""
    return logging.getLogger(f"hekaton.{name}")
