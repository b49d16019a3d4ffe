"""Recording a message hekaton acknowledges without acting on it: logged and kept, with the reason."""

from __future__ import annotations

from datetime import timedelta

from shared import logs
from shared.deps import Deps
from shared.model import IgnoredEvent

MAX_REASON = 1000  # characters
MAX_EXCERPT = 300  # characters of the payload
MAX_ID = 500  # characters of the message id
# Kept long enough to investigate; then Firestore's TTL policy on `expires_at` removes them, so a
# stream of bad input cannot grow the collection without bound.
RETENTION = timedelta(days=30)


def record_ignored(
    deps: Deps,
    *,
    function: str,
    message_id: str,
    reason: str,
    excerpt: str = "",
    topic: str | None = None,
    log: bool = True,
) -> None:
    """Keep the ignored message in the store (idempotent per function and message id), and log it.

    `log=False` when the caller's own per-message log line already carries the reason.
    """
    if log:
        logs.get_logger(function).warning(
            "message ignored: %s", reason, extra={"message_id": message_id, "function": function}
        )
    now = deps.clock.now()
    # Bounded: a reason may quote the input (an unknown name, a bad field), and input can be huge.
    deps.store.record_ignored(
        IgnoredEvent(
            message_id=message_id[:MAX_ID],
            function=function,
            reason=reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…",
            at=now,
            excerpt=excerpt[:MAX_EXCERPT],
            topic=topic,
            expires_at=now + RETENTION,
        )
    )
