"""Taps on hekaton's topics: an extra subscription of our own per topic receives a copy of every message.

A copy is enough to rebuild the exact push envelope the stack's push subscription delivers (same
messageId, data, attributes and publishTime), so a test can deliver a message a second time, or
out of order, through the same HTTP endpoint Pub/Sub uses.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from local.pubsub_wiring import subscription_name
from tests.e2e.stack_client import E2EStack, wait_until

# How long to wait for the streaming pull to shut down cleanly.
_CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Captured:
    """One message seen on a tapped topic."""

    topic: str
    message_id: str
    data: bytes
    publish_time: datetime
    attributes: dict[str, str] = field(default_factory=dict)

    def push_envelope(self, project: str, function: str) -> dict[str, Any]:
        """The body the stack's push subscription for `function` POSTs for this message."""
        published = self.publish_time.astimezone(UTC).isoformat(timespec="microseconds")
        published = published.replace("+00:00", "Z")
        return {
            "message": {
                "data": base64.b64encode(self.data).decode(),
                "attributes": dict(self.attributes),
                "messageId": self.message_id,
                "message_id": self.message_id,
                "publishTime": published,
                "publish_time": published,
            },
            "subscription": f"projects/{project}/subscriptions/{subscription_name(function)}",
        }


class TopicTap:
    """Copies of every message published to `topics` while the tap is open (a context manager)."""

    def __init__(
        self,
        stack: E2EStack,
        topics: list[str],
        on_message: Callable[[Captured], None] | None = None,
    ) -> None:
        self._stack = stack
        self._topics = topics
        self._on_message = on_message
        self._lock = threading.Lock()
        self._messages: list[Captured] = []
        self._seen: set[tuple[str, str]] = set()
        self._errors: list[BaseException] = []
        self._subscriber: Any = None
        self._subscriptions: list[str] = []
        self._futures: list[Any] = []

    def __enter__(self) -> TopicTap:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

        self._stack.target.apply_env()
        self._subscriber = pubsub_v1.SubscriberClient()
        project = self._stack.project
        try:
            for topic in self._topics:
                path = self._subscriber.subscription_path(
                    project, f"e2e-tap-{topic}-{uuid.uuid4().hex[:8]}"
                )
                self._subscriber.create_subscription(
                    name=path, topic=f"projects/{project}/topics/{topic}"
                )
                self._subscriptions.append(path)
                # Closing the tap waits for running callbacks, so their effects are complete.
                self._futures.append(
                    self._subscriber.subscribe(
                        path, self._receiver(topic), await_callbacks_on_shutdown=True
                    )
                )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for future in self._futures:
            future.cancel()
            # A cancelled streaming pull reports its cancellation as an exception.
            with contextlib.suppress(Exception):
                future.result(timeout=_CLOSE_TIMEOUT)
        for path in self._subscriptions:
            self._subscriber.delete_subscription(subscription=path)
        if self._subscriber is not None:
            self._subscriber.close()

    def _receiver(self, topic: str) -> Callable[[Any], None]:
        def receive(message: Any) -> None:
            captured = Captured(
                topic=topic,
                message_id=message.message_id,
                data=bytes(message.data),
                publish_time=message.publish_time,
                attributes=dict(message.attributes),
            )
            message.ack()
            with self._lock:
                if (topic, captured.message_id) in self._seen:
                    return  # the tap's own redelivery, not a new message
                self._seen.add((topic, captured.message_id))
                self._messages.append(captured)
            if self._on_message is not None:
                try:
                    self._on_message(captured)
                except BaseException as error:  # surfaced by `errors`, not lost in the pull thread
                    with self._lock:
                        self._errors.append(error)

        return receive

    @property
    def messages(self) -> list[Captured]:
        """Every message captured so far, in arrival order."""
        with self._lock:
            return list(self._messages)

    def wait_for(
        self, predicate: Callable[[Captured], bool], *, timeout: float, what: str
    ) -> Captured:
        """The first captured message matching `predicate`, waiting up to `timeout` seconds."""
        return wait_until(
            lambda: next((m for m in self.messages if predicate(m)), None),
            timeout=timeout,
            what=what,
        )

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by `on_message`."""
        with self._lock:
            return list(self._errors)
