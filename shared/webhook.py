"""The Slack-compatible webhook sink: one `{"text": ...}` POST per transition event.

The URL (`HEKATON_NOTIFY_WEBHOOK_URL`) is a secret: it is never logged, recorded or put in an
event; logs name only its host and a short hash (`webhook_label`). A webhook that fails (5xx,
refused, reset) is tried `attempts` times with a short timeout each, then the event is recorded
as ignored with the reason and acknowledged: the sink is its own function on `hekaton-events`, so
nothing it does delays or blocks a rollout.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from events.pubsub import PubSubMessage
from events.transitions import parse_transition
from shared import logs
from shared.deps import Deps
from shared.ignoring import record_ignored
from shared.logs import get_logger

URL_ENV = "HEKATON_NOTIFY_WEBHOOK_URL"
FUNCTION = "notify"
ATTEMPTS = 3
TIMEOUT_SECONDS = 2.0
BACKOFF_SECONDS = (0.2, 0.5)
REMEMBERED_IDS = 1000  # events this instance already delivered (redeliveries are not re-posted)

log = get_logger(FUNCTION)
# httpx logs every request's full URL at INFO: the webhook's URL is the secret.
logging.getLogger("httpx").setLevel(logging.WARNING)


def webhook_label(url: str) -> str:
    """What may be logged about the URL: its host and a hash of the whole URL."""
    host = urlsplit(url).hostname or "?"
    return f"{host} (sha256:{hashlib.sha256(url.encode()).hexdigest()[:12]})"


@dataclass
class Delivery:
    """What the sink did with one event (returned for the function's log line: no URL in it)."""

    status: str  # "posted", "repeated", "disabled", "ignored"
    rollout_id: str = ""
    event_id: str = ""
    attempts: int = 0
    detail: str = ""


class WebhookSink:
    """Posts transition events to one webhook; bounded retries, short timeouts."""

    def __init__(
        self,
        url: str | None,
        *,
        attempts: int = ATTEMPTS,
        timeout: float = TIMEOUT_SECONDS,
        backoff: tuple[float, ...] = BACKOFF_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url or None
        self._attempts = max(1, attempts)
        self._timeout = timeout
        self._backoff = backoff
        self._sleep = sleep
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        logs.add_secret(self._url)  # belt and braces: never printed, even by mistake
        if self._url is None:
            log.info("no %s set: transition events are acknowledged and not posted", URL_ENV)
        else:
            log.info("posting transition events to webhook %s", webhook_label(self._url))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookSink:
        """The sink for the URL in the environment (disabled without one)."""
        source = os.environ if env is None else env
        return cls(source.get(URL_ENV, "").strip() or None)

    def handle(self, deps: Deps, message: PubSubMessage) -> Delivery:
        """Post one `hekaton-events` message; a failure is recorded as ignored, never raised."""
        event = parse_transition(message.data)  # MalformedEvent: recorded and acked by the runtime
        if self._url is None:
            return Delivery("disabled", event.rollout_id, event.id)
        with self._lock:
            if event.id in self._delivered:
                return Delivery("repeated", event.rollout_id, event.id)
        error = ""
        for attempt in range(1, self._attempts + 1):
            error, retry = self._post(event.line())
            if not error:
                with self._lock:
                    self._delivered[event.id] = None
                    while len(self._delivered) > REMEMBERED_IDS:
                        self._delivered.popitem(last=False)
                return Delivery("posted", event.rollout_id, event.id, attempt)
            if not retry:
                break  # the webhook rejects this message: trying again gets the same answer
            if attempt < self._attempts:
                self._sleep(self._backoff[min(attempt - 1, len(self._backoff) - 1)])
        reason = (
            f"webhook {webhook_label(self._url)} not notified of {event.id} after "
            f"{attempt} attempt(s): {error}"
        )
        record_ignored(
            deps,
            function=FUNCTION,
            message_id=message.message_id,
            reason=reason,
            topic=message.topic,
        )
        return Delivery("ignored", event.rollout_id, event.id, attempt, reason)

    def _post(self, text: str) -> tuple[str, bool]:
        """POST the text: ('', _) on success, else (why it failed, without the URL; worth retrying)."""
        assert self._url is not None
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout, follow_redirects=False)
        try:
            response = self._client.post(self._url, json={"text": text})
        except httpx.TimeoutException:
            return f"timed out after {self._timeout:g}s", True
        except httpx.HTTPError as exc:
            return type(exc).__name__, True  # the exception's text may quote the URL
        status = response.status_code
        if status >= 300:
            # A 4xx (but 429) rejects this message: trying again would get the same answer.
            return f"refused with HTTP {status}", status >= 500 or status == 429
        return "", False
