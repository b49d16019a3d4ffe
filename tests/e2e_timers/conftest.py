"""A stack of its own for the timer tests: the tick slowed to Cloud Scheduler's minute.

A package of its own, so the shared e2e stack (tests/e2e, tick every 0.5 s) is stopped before
this one starts: the two never share the machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.stack import StackOptions
from tests.e2e.stack_client import E2EStack, running_stack

# As in GCP: only timers can resolve a wait in less than a minute.
TICK_SECONDS = 60.0


@pytest.fixture(scope="package")
def slow_tick_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    """The whole stack with the Cloud Tasks emulator and a tick every 60 s."""
    options = StackOptions(
        state_dir=tmp_path_factory.mktemp("timers-stack"), tick_seconds=TICK_SECONDS
    )
    with running_stack(options, tmp_path_factory.mktemp("timers-specs")) as stack:
        yield stack
