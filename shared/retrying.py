"""The one retry-on-conflict helper: re-read and re-decide after a lost preconditioned write."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from shared.errors import PreconditionFailed, RetryableError
from shared.logs import get_logger

T = TypeVar("T")
MAX_ATTEMPTS = 5
log = get_logger("retrying")


def retry_on_conflict(attempt: Callable[[], T], *, what: str) -> T:
    """Run `attempt` (load, decide, commit) until it does not lose a write race; RetryableError after
    MAX_ATTEMPTS so Pub/Sub (or the API client) tries again later."""
    for number in range(1, MAX_ATTEMPTS + 1):
        try:
            return attempt()
        except PreconditionFailed as exc:
            log.info("lost a write race, re-evaluating", extra={"what": what, "attempt": number})
            last = exc
    raise RetryableError(f"{what}: still contended after {MAX_ATTEMPTS} attempts") from last
