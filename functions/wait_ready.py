"""Cloud Function `wait_ready` (trigger: topic `hekaton-wait-ready`): one rollout step."""

from __future__ import annotations

from typing import Any

import functions_framework

from events.steps import StepType
from functions._steps import step_function
from shared.steps import wait_ready as step


@functions_framework.cloud_event
def wait_ready(cloud_event: Any) -> None:
    """Run the wait_ready step for the rollout named in the event."""
    step_function(cloud_event, StepType.WAIT_READY, step.act)
