"""The metrics provider boundary: run an instant query at a time, say whether the backend is up.

One module per provider behind this Protocol (Flagger's ``pkg/metrics/providers``): Prometheus's
HTTP API (``shared.metrics.prometheus``), an in-memory fake and a no-op (``shared.metrics.fake``).
What to ask for lives apart, in ``shared.metrics.observers``.

Failures are errors, never "no data": an empty result means the backend answered and has no
matching series. ``MetricsUnavailable`` (retryable: redelivery may find the backend back) covers a
backend that cannot be reached or cannot answer now; ``MetricsQueryError`` (permanent: asking again
gets the same answer) covers a query the backend rejects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.errors import PermanentError, RetryableError


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: a series' labels and its value at the query time."""

    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0


class MetricsUnavailable(RetryableError):
    """The backend could not answer (refused, timed out, 5xx, not ready); the message says what to check."""


class MetricsQueryError(PermanentError):
    """The backend rejected the query (e.g. Prometheus 400/422); the message carries its error text."""

    def __init__(self, message: str, *, query: str | None = None) -> None:
        self.query = query
        super().__init__(message)


class MetricsProvider(Protocol):
    """Runs PromQL instant queries against one metrics backend."""

    @property
    def description(self) -> str:
        """What this backend is and where (for error messages and the decision log)."""
        ...

    def query(self, promql: str, at: datetime) -> list[Sample]:
        """Evaluate ``promql`` at ``at`` (timezone-aware); raise rather than return nothing on failure."""
        ...

    def online(self) -> bool:
        """True if the backend is reachable and ready to answer queries."""
        ...
