"""Dead letters: keep each message Pub/Sub gave up on (once, however often it comes), and replay it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from datetime import datetime

from events.pubsub import DEAD_LETTER_ID, ORIGINAL_PUBLISH_TIME, PubSubMessage
from shared.commands import Refused
from shared.deps import Deps
from shared.logs import get_logger
from shared.model import DeadLetter, Replay, ReplayClaim
from shared.retrying import retry_on_conflict
from shared.store import MUST_NOT_EXIST

# Attributes Pub/Sub adds when it forwards a message to the dead-letter topic.
_PREFIX = "CloudPubSubDeadLetter"
SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"
SOURCE_PROJECT = "CloudPubSubDeadLetterSourceSubscriptionProject"
DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"
# Set on a replayed message, so a replay that dead-letters again says what it was a replay of.
REPLAY_OF = "hekaton-replay-of"

MAX_EXCERPT = 300  # characters shown in listings
MAX_KEPT_DATA = 512 * 1024  # bytes kept for replay; Firestore documents stop at 1 MiB
MAX_ATTRIBUTE = 1024  # characters of one attribute value (Pub/Sub's own limit on values)

log = get_logger("dead_letters")


def dead_letter_id(message: PubSubMessage) -> str:
    """A Firestore-safe id that is the same for every copy of one dead-lettered message.

    Pub/Sub may dead-letter a message more than once ("best effort"), each copy with its own message
    id; what the copies share is the source subscription, the original publish time, the payload and
    the original attributes, so the id is a digest of those.
    """
    attributes = message.attributes
    if SOURCE_SUBSCRIPTION not in attributes:
        raw = message.message_id
        kept = f"dl-{raw}"
        return kept if DEAD_LETTER_ID.fullmatch(kept) else f"dl-{_digest(raw.encode())}"
    original = {k: v for k, v in attributes.items() if not k.startswith(_PREFIX)}
    identity = json.dumps(
        [attributes[SOURCE_SUBSCRIPTION], attributes.get(PUBLISH_TIME), sorted(original.items())]
    ).encode()
    return "dl-" + _digest(identity + b"\0" + message.data)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def subscription_id(name: str | None) -> str | None:
    """`projects/P/subscriptions/S` -> `S` (as given when it names no project)."""
    if not name:
        return None
    return name.rsplit("/subscriptions/", 1)[-1] or None


def record_from_message(
    message: PubSubMessage, *, original_topic: str | None, now: datetime
) -> DeadLetter:
    """The record of one delivered dead letter (attempts and origin from Pub/Sub's attributes)."""
    attributes = message.attributes
    count = attributes.get(DELIVERY_COUNT, "")
    kept = len(message.data) <= MAX_KEPT_DATA
    return DeadLetter(
        id=dead_letter_id(message),
        message_id=message.message_id[:500],
        source_subscription=subscription_id(attributes.get(SOURCE_SUBSCRIPTION)),
        original_topic=original_topic,
        attempts=int(count) if count.isdigit() else None,
        first_seen=now,
        last_seen=now,
        attributes={k[:256]: v[:MAX_ATTRIBUTE] for k, v in list(attributes.items())[:100]},
        excerpt=message.excerpt(MAX_EXCERPT),
        data=message.data if kept else None,
        size=len(message.data),
        published_at=attributes.get(PUBLISH_TIME),
        replay_of=attributes.get(REPLAY_OF),
    )


def keep(deps: Deps, record: DeadLetter) -> DeadLetter:
    """Store a dead letter once: a redelivered (or twice dead-lettered) copy only moves `last_seen`."""

    def attempt() -> DeadLetter:
        existing = deps.store.get_dead_letter(record.id)
        if existing is None:
            deps.store.put_dead_letter(record, MUST_NOT_EXIST)
            log.error(
                "message dead-lettered after %s attempts on %s: %s",
                record.attempts,
                record.source_subscription,
                record.excerpt[:120],
                extra={"dead_letter": record.id, "topic": record.original_topic},
            )
            return record
        seen = dataclasses.replace(
            existing.value,
            last_seen=max(existing.value.last_seen, record.last_seen),
            attempts=max(existing.value.attempts or 0, record.attempts or 0) or None,
        )
        deps.store.put_dead_letter(seen, existing.version)
        return seen

    return retry_on_conflict(attempt, what=f"keep dead letter {record.id}")


# A claim older than this is a replay that died between publishing and recording: no longer held.
CLAIM_SECONDS = 60.0


def replay(
    deps: Deps,
    dead_letter: str,
    *,
    principal: str,
    force: bool = False,
    publish: Callable[[str, bytes, dict[str, str]], str] | None = None,
) -> tuple[DeadLetter, Replay]:
    """Republish a dead letter's data and attributes to its original topic, and record the replay.

    Refused("not_found") for an unknown id; Refused("conflict") when it was replayed already
    (unless `force`), another replay of it is under way, or it cannot be replayed (origin
    unknown, payload not kept). The replay is claimed on the record before it publishes, so two
    replays at the same instant publish once: the second is refused.
    """
    send = publish or deps.publisher.publish_raw
    claimed, topic, data = retry_on_conflict(
        lambda: _claim(deps, dead_letter, principal, force),
        what=f"claim dead letter {dead_letter[:120]} for a replay",
    )
    attributes = {k: v for k, v in claimed.attributes.items() if not k.startswith(_PREFIX)}
    attributes[REPLAY_OF] = claimed.id
    if claimed.published_at:  # the push's own time still orders it among the others
        attributes.setdefault(ORIGINAL_PUBLISH_TIME, claimed.published_at)
    try:
        message_id = send(topic, data, attributes)
    except Exception:
        _release(deps, claimed.id)
        raise
    done = Replay(
        at=deps.clock.now(),
        principal=principal,
        message_id=message_id,
        topic=topic,
        forced=bool(claimed.replays),
    )
    updated = retry_on_conflict(
        lambda: _record(deps, claimed.id, done),
        what=f"record the replay of dead letter {claimed.id}",
    )
    log.info(
        "dead letter replayed to %s",
        topic,
        extra={"dead_letter": claimed.id, "message_id": message_id, "principal": principal},
    )
    return updated, done


def _claim(
    deps: Deps, dead_letter: str, principal: str, force: bool
) -> tuple[DeadLetter, str, bytes]:
    """Check the dead letter can be replayed now and mark it as being replayed (one write).

    Returns the claimed record, the topic to publish to and the payload.
    """
    loaded = deps.store.get_dead_letter(dead_letter)
    if loaded is None:
        raise Refused("not_found", f"no dead letter {dead_letter[:120]!r} (see `hekaton dlq list`)")
    record = loaded.value
    now = deps.clock.now()
    claim = record.replay_claim
    if claim is not None and (now - claim.at).total_seconds() < CLAIM_SECONDS:
        raise Refused(
            "conflict",
            f"dead letter {record.id} is being replayed by {claim.principal} since "
            f"{claim.at.isoformat()}; see `hekaton dlq list` for its outcome",
        )
    if record.replays and not force:
        last = record.replays[-1]
        raise Refused(
            "conflict",
            f"dead letter {record.id} was replayed already at {last.at.isoformat()} by "
            f"{last.principal} (message {last.message_id}); use --force to replay it again",
        )
    if record.original_topic is None:
        raise Refused(
            "conflict",
            f"dead letter {record.id} came from subscription {record.source_subscription!r}, "
            "which feeds no hekaton function: its original topic is unknown",
        )
    if record.data is None:
        raise Refused(
            "conflict",
            f"dead letter {record.id}'s payload ({record.size} bytes) was too large to keep",
        )
    claimed = dataclasses.replace(record, replay_claim=ReplayClaim(at=now, principal=principal))
    deps.store.put_dead_letter(claimed, loaded.version)
    return claimed, record.original_topic, record.data


def _record(deps: Deps, dead_letter: str, done: Replay) -> DeadLetter:
    """Add the replay to the record and drop the claim (a recorder's update may race it)."""
    loaded = deps.store.get_dead_letter(dead_letter)
    if loaded is None:  # deleted meanwhile (TTL): nothing left to record on
        raise Refused("not_found", f"dead letter {dead_letter} vanished during its replay")
    updated = dataclasses.replace(
        loaded.value, replays=(*loaded.value.replays, done), replay_claim=None
    )
    deps.store.put_dead_letter(updated, loaded.version)
    return updated


def _release(deps: Deps, dead_letter: str) -> None:
    """Drop the claim of a replay whose publish failed (best effort: it also lapses by itself)."""
    try:
        loaded = deps.store.get_dead_letter(dead_letter)
        if loaded is not None and loaded.value.replay_claim is not None:
            released = dataclasses.replace(loaded.value, replay_claim=None)
            deps.store.put_dead_letter(released, loaded.version)
    except Exception:  # the publish error is the one to report; the claim lapses anyway
        log.warning(
            "could not release the replay claim on dead letter %s; it lapses after %g s",
            dead_letter,
            CLAIM_SECONDS,
            exc_info=True,
        )
