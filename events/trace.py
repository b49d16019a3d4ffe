"""W3C trace context for hekaton's events: one trace per rollout, carried as `traceparent`.

Every step event of a rollout carries `traceparent: 00-<trace-id>-<span-id>-01` as a Pub/Sub
attribute and as the CloudEvent extension of the same name. The trace id is derived from the
rollout id, so any message about the rollout (a step, a sweep's re-emit, an operator command)
joins the same trace without it being stored, and Logs Explorer follows a whole rollout with one
trace filter. Span ids are fresh per publication.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

ATTRIBUTE = "traceparent"  # the Pub/Sub attribute and the CloudEvent extension
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    """A trace id (32 hex) and the id of the span that sent the message (16 hex)."""

    trace_id: str
    span_id: str

    def header(self) -> str:
        """The `traceparent` value (version 00, sampled)."""
        return f"00-{self.trace_id}-{self.span_id}-01"


def parse(value: str | None) -> TraceContext | None:
    """A `traceparent` value's context; None when absent or malformed (never an error: it is advice)."""
    match = _TRACEPARENT.match((value or "").strip().lower())
    if match is None or match.group(1) == "ff":
        return None
    trace_id, span_id = match.group(2), match.group(3)
    if set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None  # all-zero ids are invalid in W3C trace context
    return TraceContext(trace_id, span_id)


def rollout_trace_id(rollout_id: str) -> str:
    """The trace id of every event of one rollout (deterministic: needs no storage)."""
    return hashlib.sha256(f"hekaton-rollout:{rollout_id}".encode()).hexdigest()[:32]


def for_rollout(rollout_id: str) -> TraceContext:
    """A new span in the rollout's trace, for one publication."""
    return TraceContext(rollout_trace_id(rollout_id), secrets.token_hex(8))
