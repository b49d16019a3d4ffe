"""Cloud Function `notify` (trigger: topic `hekaton-events`): the optional Slack-compatible webhook sink.

Posts one line per rollout transition to `HEKATON_NOTIFY_WEBHOOK_URL` (a secret: never logged);
without it set, acknowledges every event and posts nothing. A separate function, so a webhook that
fails or hangs never delays a rollout.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from functions._runtime import handle_pubsub
from shared.webhook import WebhookSink

_sink: WebhookSink | None = None


def sink() -> WebhookSink:
    """The instance's sink, made once (it says once in the log whether a webhook is set)."""
    global _sink
    if _sink is None:
        _sink = WebhookSink.from_env()
    return _sink


@functions_framework.cloud_event
def notify(cloud_event: Any) -> None:
    """Post the transition to the webhook (bounded retries), or record why it was not."""
    handle_pubsub(cloud_event, "notify", lambda d, message: sink().handle(d, message))
