"""Recording a message hekaton acknowledges without acting on it: logged and kept, with the reason."""

from __future__ import annotations

from shared import logs
from shared.deps import Deps
from shared.model import IgnoredEvent


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
    deps.store.record_ignored(
        IgnoredEvent(
            message_id=message_id,
            function=function,
            reason=reason,
            at=deps.clock.now(),
            excerpt=excerpt,
            topic=topic,
        )
    )
