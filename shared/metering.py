"""Per-invocation usage counters (Firestore reads/writes, Kubernetes calls, messages published), logged per event."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[Counter[str] | None] = ContextVar("hekaton_usage", default=None)

FIRESTORE_READS = "firestore_reads"
FIRESTORE_WRITES = "firestore_writes"
KUBE_CALLS = "kube_calls"
MESSAGES_PUBLISHED = "messages_published"
METRICS_QUERIES = "metrics_queries"


def count(kind: str, amount: int = 1) -> None:
    """Add to the current invocation's counter (no-op outside an invocation)."""
    usage = _current.get()
    if usage is not None:
        usage[kind] += amount


@contextmanager
def invocation() -> Iterator[Counter[str]]:
    """Collect the usage of everything done inside the block."""
    usage: Counter[str] = Counter()
    token = _current.set(usage)
    try:
        yield usage
    finally:
        _current.reset(token)
