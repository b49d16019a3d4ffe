"""The integration tier's Firestore store: a fresh emulator project, with room for a busy machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.firestore_store import FirestoreStore
from tests.conftest import LOCAL_CALL_TIMEOUT


@pytest.fixture
def store(firestore_project: str) -> Iterator[FirestoreStore]:
    """A FirestoreStore on a fresh, empty emulator project."""
    created = FirestoreStore.for_project(firestore_project, timeout_seconds=LOCAL_CALL_TIMEOUT)
    yield created
    created._db.close()
