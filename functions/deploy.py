"""Cloud Function `deploy` (trigger: topic `hekaton-deploy`): one rollout step."""

from __future__ import annotations

from typing import Any

import functions_framework

from events.steps import StepType
from functions._steps import step_function
from shared.steps import deploy as step


@functions_framework.cloud_event
def deploy(cloud_event: Any) -> None:
    """Run the deploy step for the rollout named in the event."""
    step_function(cloud_event, StepType.DEPLOY, step.act)
