"""Cloud Function `validate` (trigger: topic `hekaton-validate`): one rollout step."""

from __future__ import annotations

from typing import Any

import functions_framework

from events.steps import StepType
from functions._steps import step_function
from shared.steps import validate as step


@functions_framework.cloud_event
def validate(cloud_event: Any) -> None:
    """Run the validate step for the rollout named in the event."""
    step_function(cloud_event, StepType.VALIDATE, step.act)
