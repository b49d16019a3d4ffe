"""Timers as named Cloud Tasks tasks that publish the step event to its topic at the due time.

Each task is an HTTP task: POST `{publish_url}/v1/projects/P/topics/T:publish` with the step's
Pub/Sub message, carrying an OAuth token of the configured service account (Cloud Tasks mints it).
The name is derived from the rollout, its sequence number and the due time (shared/timers/naming.py),
so scheduling the same wake-up twice (a redelivered step) is ALREADY_EXISTS, which is success.
The same code runs locally against the stack's Cloud Tasks emulator (`HEKATON_TASKS_EMULATOR_HOST`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Any

from events import trace
from shared.clock import Clock, SystemClock
from shared.publisher import step_attributes
from shared.settings import Settings
from shared.timers.naming import task_id
from shared.timers.protocol import Scheduled, Timer

# A task's OAuth token: enough to publish to Pub/Sub.
OAUTH_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Bound on one CreateTask call: a slow Cloud Tasks must not hold the step that just committed.
CREATE_TIMEOUT_SECONDS = 5.0
# Cloud Tasks refuses schedule times more than 30 days ahead; later waits are left to the tick.
MAX_HORIZON = timedelta(days=30) - timedelta(hours=1)


def publish_url(base: str, project: str, topic: str) -> str:
    """The Pub/Sub REST publish endpoint of a topic."""
    return f"{base.rstrip('/')}/v1/projects/{project}/topics/{topic}:publish"


def publish_body(timer: Timer, source: str) -> bytes:
    """The JSON body of a Pub/Sub REST publish carrying the timer's step event."""
    message = {
        "data": base64.b64encode(
            timer.event.to_json(
                source, traceparent=trace.for_rollout(timer.event.rollout_id).header()
            )
        ).decode(),
        "attributes": step_attributes(timer.event),
    }
    return json.dumps({"messages": [message]}, separators=(",", ":")).encode()


def tasks_client(emulator_host: str | None) -> Any:
    """A Cloud Tasks client: the real API with the function's credentials, or the emulator's gRPC."""
    from google.cloud import tasks_v2

    if not emulator_host:
        return tasks_v2.CloudTasksClient()
    import grpc
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    channel = grpc.insecure_channel(emulator_host)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


class CloudTasksTimers:
    """Creates one named HTTP task per wake-up in one queue."""

    SOURCE = "timer"

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        queue: str,
        project: str,
        service_account: str | None,
        publish_base: str,
        clock: Clock | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._clock: Clock = clock or SystemClock()
        self._queue = queue
        self._project = project
        self._service_account = service_account
        self._publish_base = publish_base

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudTasksTimers:
        """Timers in the settings' queue; the client (Cloud Tasks, or the emulator) made on first use."""
        assert settings.tasks_queue is not None  # Settings refuses cloudtasks without a queue
        return cls(
            lambda: tasks_client(settings.tasks_emulator_host),
            queue=settings.tasks_queue,
            project=settings.project,
            service_account=settings.tasks_service_account,
            publish_base=settings.pubsub_publish_url,
        )

    @cached_property
    def _client(self) -> Any:
        return self._client_factory()

    def task_name(self, timer: Timer) -> str:
        """The full resource name of the timer's task."""
        return f"{self._queue}/tasks/{task_id(timer.rollout_id, timer.seq, timer.due_at)}"

    def task(self, timer: Timer) -> Any:
        """The Cloud Tasks Task that delivers the timer's step event at its due time."""
        from google.cloud import tasks_v2

        request = tasks_v2.HttpRequest(
            url=publish_url(self._publish_base, self._project, timer.event.type.topic),
            http_method=tasks_v2.HttpMethod.POST,
            headers={"Content-Type": "application/json"},
            body=publish_body(timer, self.SOURCE),
        )
        if self._service_account:
            request.oauth_token = tasks_v2.OAuthToken(
                service_account_email=self._service_account, scope=OAUTH_SCOPE
            )
        return tasks_v2.Task(
            name=self.task_name(timer), schedule_time=timer.due_at, http_request=request
        )

    def schedule(self, timer: Timer) -> Scheduled:
        """Create the timer's task; an existing one of the same name is success."""
        from google.api_core.exceptions import AlreadyExists

        if timer.due_at - self._clock.now() > MAX_HORIZON:
            return Scheduled.TICK_ONLY

        try:
            self._client.create_task(
                parent=self._queue, task=self.task(timer), timeout=CREATE_TIMEOUT_SECONDS
            )
        except AlreadyExists:
            return Scheduled.EXISTS
        return Scheduled.CREATED
