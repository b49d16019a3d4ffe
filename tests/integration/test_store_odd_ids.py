"""FirestoreStore against the real emulator with ids Firestore cannot hold ('/', '..', '__x__', too
long, NUL, lone surrogates): reads find nothing, ignore records are kept under a safe id, and no
Python or gRPC error escapes (each would be a 500 or a redelivery loop)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events import jsontext
from shared.firestore_store import FirestoreStore
from shared.model import IgnoredEvent

ODD_IDS = [
    "a/b",
    "rollouts/x/decisions/y",
    "",
    ".",
    "..",
    "__x__",
    "x" * 1600,
    "é" * 800,
    "a\x00b",
    "\udc80",
]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.emulators


@pytest.mark.parametrize("odd", ODD_IDS, ids=repr)
def test_reads_of_an_id_firestore_cannot_hold_find_nothing(store: FirestoreStore, odd: str) -> None:
    """No such document can exist, so the answer is 'not there' (a 404 upstream), never an error."""
    assert store.get_rollout(odd) is None
    assert store.get_service(odd) is None
    assert store.get_request(odd) is None
    assert store.list_ignored(after=odd) == []
    assert store.list_rollouts("iris", after=odd) == []
    assert store.decisions(odd) == []


@pytest.mark.parametrize("odd", [i for i in ODD_IDS if jsontext.encodable(i)], ids=repr)
def test_an_ignore_record_for_any_message_id_is_kept(store: FirestoreStore, odd: str) -> None:
    """The record's id is made safe (shared/ignoring.py escapes lone surrogates before this)."""
    store.record_ignored(IgnoredEvent(odd[:500], "ingest", "why", T0))
    (kept,) = store.list_ignored()
    assert kept.reason == "why"
