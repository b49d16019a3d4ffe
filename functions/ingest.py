"""Cloud Function `ingest` (trigger: topic `gcr`, Artifact Registry notifications): start rollouts."""

from __future__ import annotations

from typing import Any

import functions_framework

from functions._runtime import handle_pubsub
from shared.steps import ingest as step


@functions_framework.cloud_event
def ingest(cloud_event: Any) -> None:
    """Parse the registry notification and start a rollout for each matching service."""
    handle_pubsub(cloud_event, "ingest", step.handle)
