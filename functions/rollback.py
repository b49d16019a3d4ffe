"""Cloud Function `rollback` (trigger: topic `hekaton-rollback`): operator-forced rollback."""

from __future__ import annotations

from typing import Any

import functions_framework

from functions._runtime import handle_pubsub
from shared.steps import rollback as step


@functions_framework.cloud_event
def rollback(cloud_event: Any) -> None:
    """Return the named service's traffic to its stable (or the named) revision and end its rollout."""
    handle_pubsub(cloud_event, "rollback", step.handle)
