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
) -> None:
    """Log the ignored message and keep it in the store (idempotent per function and message id)."""
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
