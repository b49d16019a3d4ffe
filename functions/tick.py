"""Cloud Function `tick` (trigger: topic `hekaton-tick`, Cloud Scheduler): re-emit due and lost steps."""

from __future__ import annotations

from typing import Any

import functions_framework

from events.pubsub import PubSubMessage
from functions._runtime import handle_pubsub
from shared.deps import Deps
from shared.steps import sweep


def _sweep(d: Deps, message: PubSubMessage) -> sweep.SweepReport:
    return sweep.sweep(d, cause=message.message_id)


@functions_framework.cloud_event
def tick(cloud_event: Any) -> None:
    """Sweep active rollouts for due steps."""
    handle_pubsub(cloud_event, "tick", _sweep)
