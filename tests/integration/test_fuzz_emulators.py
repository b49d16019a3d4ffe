"""A small seeded share of the fuzzer against the real Firestore emulator, through functions-framework's
app: what Firestore itself refuses (ids, sizes, Unicode) must end recorded too, never a 500."""

from __future__ import annotations

import pytest
from hypothesis import given, seed

from functions.manifest import FunctionDef
from shared.firestore_store import FirestoreStore
from tests import fuzz_targets
from tests.fuzz_inputs import Delivery
from tests.fuzz_targets import UNHANDLED

pytestmark = [pytest.mark.slow, pytest.mark.emulators]
SHARE = fuzz_targets.share(15)
TARGETS = [f for f in fuzz_targets.event_functions() if f.name in ("ingest", "deploy", "rollback")]


@pytest.mark.parametrize("fn", TARGETS, ids=lambda f: f.name)
def test_generated_deliveries_onto_the_emulator_end_handled_or_recorded(
    fn: FunctionDef, store: FirestoreStore
) -> None:
    """Registry pushes, step events and commands, stored in the real emulator."""
    world, ctx = fuzz_targets.fuzz_world(store=store)
    outcomes: list[str] = []

    @seed(3)
    @SHARE
    @given(fuzz_targets.deliveries_for(fn, ctx))
    def check(delivery: Delivery) -> None:
        result = fuzz_targets.deliver(world, fn.name, delivery)
        assert result.outcome != UNHANDLED, (result.status, result.detail)
        outcomes.append(result.outcome)

    check()
    assert len(outcomes) == 15
    assert store.count_ignored() > 0  # the records really went into Firestore
