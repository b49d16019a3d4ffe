"""Cloud Function `promote` (trigger: topic `hekaton-promote`): one rollout step."""

from __future__ import annotations

from typing import Any

import functions_framework

from events.steps import StepType
from functions._steps import step_function
from shared.steps import promote as step


@functions_framework.cloud_event
def promote(cloud_event: Any) -> None:
    """Run the promote step for the rollout named in the event."""
    step_function(cloud_event, StepType.PROMOTE, step.act)
