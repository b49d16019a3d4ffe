"""What every event function shares: settings loaded once, the Pub/Sub decode, and error -> ack/retry mapping."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from events import trace
from events.errors import MalformedEvent
from events.pubsub import PUBSUB_EVENT_TYPE, PubSubMessage, parse_message, topic_from_source
from shared import crashpoints, logs, metering
from shared.deps import Deps
from shared.errors import PermanentError, RetryableError
from shared.ignoring import record_ignored
from shared.settings import Settings

_deps: Deps | None = None
_framework_logger_adopted = False
# Set on an exception hekaton logged (with what to check) before letting it end the request.
LOGGED = "hekaton_logged"


def deps() -> Deps:
    """The instance's dependencies, created on first use and reused while the instance lives."""
    global _deps
    if _deps is None:
        settings = Settings.from_env()
        logs.configure(fmt=settings.log_format, project=settings.project)
        if settings.crash_points:  # fault injection on the local stack; never set in GCP
            # Seeded per worker: a worker respawned after a crash must not replay the draw that
            # ended its predecessor (that would crash it at the same place, forever).
            seed = f"{settings.crash_seed}:{os.getpid()}"
            crashpoints.arm(crashpoints.CrashPoints(settings.crash_points, seed))
        _deps = Deps(settings)
    return _deps


def handle_pubsub(
    cloud_event: Any,
    function: str,
    work: Callable[[Deps, PubSubMessage], Any],
    *,
    dependencies: Deps | None = None,
) -> Any:
    """Run `work` on the Pub/Sub message inside a CloudEvent.

    Malformed input and permanent failures are recorded and acknowledged (return normally); retryable
    failures raise so Pub/Sub redelivers (and, after the subscription's limit, dead-letters).
    """
    d = dependencies or deps()
    _framework_logs_as_json()
    event_id = _attr(cloud_event, "id") or "unknown"
    event_type = _attr(cloud_event, "type")
    if event_type != PUBSUB_EVENT_TYPE:
        _record(
            d,
            function,
            event_id,
            f"unexpected CloudEvent type {event_type!r}; expected {PUBSUB_EVENT_TYPE}",
        )
        return None
    source = _attr(cloud_event, "source")
    try:
        message = parse_message(cloud_event.data, event_id=event_id, source=source)
    except MalformedEvent as exc:
        # The envelope is unusable, but the topic it came from is known: keep it on the record.
        _record(d, function, event_id, exc.reason, topic=topic_from_source(source))
        return None
    # The rollout's trace (every step event carries it), else the trace Eventarc gave the event.
    context = trace.parse(message.attributes.get(trace.ATTRIBUTE)) or trace.parse(
        _attr(cloud_event, trace.ATTRIBUTE)
    )
    with logs.scope(
        trace_context=context,
        function=function,
        rollout=message.attributes.get("rollout"),
        service=message.attributes.get("service"),
    ):
        return _run(d, function, message, work)


def _run(
    d: Deps, function: str, message: PubSubMessage, work: Callable[[Deps, PubSubMessage], Any]
) -> Any:
    """`work` on one decoded message, inside its log scope; errors mapped to ack or retry."""
    log = logs.get_logger(function)
    try:
        with metering.invocation() as usage:
            result = work(d, message)
        rollouts = [getattr(result, "rollout_id", None), *getattr(result, "started", [])]
        for rollout in [r for r in rollouts if r] or [None]:  # one line per rollout it touched
            log.info(
                "%s handled message %s",
                function,
                message.message_id,
                extra={
                    "message_id": message.message_id,
                    "rollout": rollout,
                    "service": getattr(result, "service_of", {}).get(rollout),
                    "outcome": getattr(result, "status", None),
                    "ignored": getattr(result, "ignored", None),
                    "usage": dict(usage),
                },
            )
        return result
    except MalformedEvent as exc:
        _record(d, function, message.message_id, exc.reason, message.excerpt(), message.topic)
    except PermanentError as exc:
        _record(
            d,
            function,
            message.message_id,
            f"permanent failure: {exc}",
            message.excerpt(),
            message.topic,
        )
    except RetryableError as exc:
        log.warning(
            "retryable failure, Pub/Sub will redeliver: %s",
            exc,
            extra={"message_id": message.message_id},
        )
        setattr(exc, LOGGED, True)
        raise
    except Exception as exc:
        setattr(exc, LOGGED, True)
        log.exception(
            "%s failed on message %s with an unexpected error; Pub/Sub will redeliver it. Check "
            "the stack trace, the function's settings (HEKATON_*), and that Firestore, Pub/Sub "
            "and the cluster answer",
            function,
            message.message_id,
            extra={"message_id": message.message_id},
        )
        raise
    return None


def _framework_logs_as_json() -> None:
    """Send Flask's own log records through hekaton's JSON handler, minus what hekaton logged.

    An exception ending the request is how a retryable error makes Pub/Sub redeliver, and Flask
    logs each one as a multi-line text traceback on stderr: that broke "one JSON object per line",
    and repeated what hekaton had already logged with what to check.
    """
    global _framework_logger_adopted
    if _framework_logger_adopted:
        return
    import flask

    handlers = logging.getLogger("hekaton").handlers
    if not handlers or not flask.has_app_context():
        return  # hekaton's logging is not set up here (a test's own), or no Flask app: leave it
    framework = flask.current_app.logger
    framework.handlers = list(handlers)
    framework.propagate = False
    framework.addFilter(_not_logged_already)
    _framework_logger_adopted = True


def _not_logged_already(record: logging.LogRecord) -> bool:
    """Keep a record unless it is about an exception hekaton logged before it ended the request."""
    return not (record.exc_info and getattr(record.exc_info[1], LOGGED, False))


def _attr(cloud_event: Any, name: str) -> str | None:
    try:
        value = cloud_event[name]
    except (KeyError, TypeError):
        return None
    return str(value) if value is not None else None


def _record(
    d: Deps,
    function: str,
    message_id: str,
    reason: str,
    excerpt: str = "",
    topic: str | None = None,
) -> None:
    record_ignored(
        d, function=function, message_id=message_id, reason=reason, excerpt=excerpt, topic=topic
    )
