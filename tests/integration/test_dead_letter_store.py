"""Dead letters in the real Firestore emulator: round trip (payload bytes, attributes, replays, claim),
create-once, preconditioned updates and newest-first pages."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import PreconditionFailed
from shared.firestore_store import FirestoreStore
from shared.model import DeadLetter, Replay, ReplayClaim
from shared.store import MUST_NOT_EXIST

T0 = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)


def letter(n: int = 1, **changes: Any) -> DeadLetter:
    """A dead letter with every field set; its payload is bytes that are not text."""
    record = DeadLetter(
        id=f"dl-{n:032x}",
        message_id=f"m-{n}",
        source_subscription="hekaton-deploy-push",
        original_topic="hekaton-deploy",
        attempts=5,
        first_seen=T0 + timedelta(seconds=n),
        last_seen=T0 + timedelta(seconds=n),
        attributes={"ce-type": "dev.hekaton.rollout.deploy.v1", "rollout": "r-1"},
        excerpt='{"rollout_id": "r-1"}',
        data=b'\x00\xff{"rollout_id": "r-1"}',
        size=22,
        published_at="2026-12-01T19:59:00.000Z",
    )
    return replace(record, **changes)


def test_a_dead_letter_round_trips_with_its_payload_and_replays(store: FirestoreStore) -> None:
    kept = letter(
        replays=(Replay(at=T0, principal="ann@x", message_id="7", topic="hekaton-deploy"),)
    )
    store.put_dead_letter(kept, MUST_NOT_EXIST)
    found = store.get_dead_letter(kept.id)
    assert found is not None and found.value == kept
    claimed = replace(kept, replay_claim=ReplayClaim(at=T0, principal="bob@x"))
    store.put_dead_letter(claimed, found.version)
    again = store.get_dead_letter(kept.id)
    assert again is not None and again.value == claimed


def test_create_once_and_updates_are_preconditioned(store: FirestoreStore) -> None:
    store.put_dead_letter(letter(), MUST_NOT_EXIST)
    with pytest.raises(PreconditionFailed):
        store.put_dead_letter(letter(), MUST_NOT_EXIST)
    loaded = store.get_dead_letter(letter().id)
    assert loaded is not None
    store.put_dead_letter(replace(loaded.value, last_seen=T0 + timedelta(hours=1)), loaded.version)
    with pytest.raises(PreconditionFailed):  # the version read before that update is stale now
        store.put_dead_letter(loaded.value, loaded.version)


def test_pages_are_newest_first(store: FirestoreStore) -> None:
    for n in (1, 2, 3):
        store.put_dead_letter(letter(n), MUST_NOT_EXIST)
    first = store.list_dead_letters(limit=2)
    assert [r.message_id for r in first] == ["m-3", "m-2"]
    rest = store.list_dead_letters(limit=2, after=first[-1].id)
    assert [r.message_id for r in rest] == ["m-1"]
    assert store.get_dead_letter("dl-missing") is None
