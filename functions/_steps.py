"""The common shape of the chained step functions (deploy, wait-ready, validate, shift, promote)."""

from __future__ import annotations

from typing import Any

from events.errors import MalformedEvent
from events.pubsub import PubSubMessage
from events.steps import StepType, parse_step_event
from functions._runtime import handle_pubsub
from shared.deps import Deps
from shared.ignoring import record_ignored
from shared.steps.engine import Act, StepReport, run_step


def step_function(
    cloud_event: Any, step: StepType, act: Act, *, dependencies: Deps | None = None
) -> StepReport | None:
    """Decode a step event from the Pub/Sub message and run the step under the engine's rules."""
    name = step.name.lower()

    def work(d: Deps, message: PubSubMessage) -> StepReport:
        event = parse_step_event(message.data, expected=step)
        report = run_step(d, event, act, source=name)
        if report.status == "unknown-rollout":
            raise MalformedEvent(f"step event names unknown rollout {event.rollout_id!r}")
        if report.status == "stale":
            # Kept, not only logged (`hekaton ignored`); one record per message id, however many
            # times Pub/Sub redelivers it. The engine's own log line already says why.
            record_ignored(
                d,
                function=name,
                message_id=message.message_id,
                reason=f"stale or duplicate step event for rollout {report.rollout_id}: {report.detail}",
                excerpt=message.excerpt(),
                topic=message.topic,
                log=False,
            )
        return report

    result: StepReport | None = handle_pubsub(cloud_event, name, work, dependencies=dependencies)
    return result
