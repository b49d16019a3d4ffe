"""Cloud Function `shift` (trigger: topic `hekaton-shift`): one rollout step."""

from __future__ import annotations

from typing import Any

import functions_framework

from events.steps import StepType
from functions._steps import step_function
from shared.steps import shift as step


@functions_framework.cloud_event
def shift(cloud_event: Any) -> None:
    """Run the shift step for the rollout named in the event."""
    step_function(cloud_event, StepType.SHIFT, step.act)
