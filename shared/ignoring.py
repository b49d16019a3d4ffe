"""Recording a message hekaton acknowledges without acting on it: logged and kept, with the reason."""

from __future__ import annotations

from datetime import timedelta

from shared import logs
from shared.deps import Deps
from shared.model import IgnoredEvent

MAX_REASON = 1000  # characters
MAX_EXCERPT = 300  # characters of the payload
MAX_ID = 500  # characters of the message id
MAX_TOPIC = 255  # characters: Pub/Sub's longest topic id
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
    # Bounded and valid Unicode: a reason may quote the input (an unknown name, a bad field), input
    # can be huge, and JSON escapes can carry lone surrogates that neither Firestore nor a log holds.
    now = deps.clock.now()
    record = IgnoredEvent(
        message_id=bounded_text(message_id, MAX_ID),
        function=function,
        reason=bounded_text(reason, MAX_REASON),
        at=now,
        excerpt=bounded_text(excerpt, MAX_EXCERPT),
        topic=bounded_text(topic, MAX_TOPIC) if topic is not None else None,
        expires_at=now + RETENTION,
    )
    if log:
        logs.get_logger(function).warning(
            "message ignored: %s",
            record.reason,
            extra={"message_id": record.message_id, "function": function},
        )
    deps.store.record_ignored(record)


def bounded_text(text: str, limit: int) -> str:
    """`text` as valid Unicode (lone surrogates escaped) in at most `limit` characters ('…' marks a cut)."""
    clean = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
