"""One local stack for every e2e test: started once in a temporary state dir, always stopped.

The fixture is package-scoped: it starts when the first e2e test needs it and is stopped right after
the last e2e test (not at the end of the whole session), so the rest of the suite does not share
the machine's two cores with thirteen idle processes. Where the emulators are missing, every e2e
test is skipped with the package to install.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.stack import StackOptions
from tests.e2e.stack_client import E2EStack, running_stack
from tests.e2e.webhook_receiver import WebhookReceiver


@pytest.fixture(scope="package")
def webhook() -> Iterator[WebhookReceiver]:
    """The Slack-style webhook the stack's notify sink posts every transition to (answers 200)."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="package")
def e2e_stack(
    tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver
) -> Iterator[E2EStack]:
    """The running stack (emulators, cluster, every function, ticker) with helpers to drive it."""
    state_dir = tmp_path_factory.mktemp("e2e-stack")
    with running_stack(
        StackOptions(state_dir=state_dir),
        tmp_path_factory.mktemp("e2e-specs"),
        # As a developer would: the sink's secret URL comes from the environment `up` runs in.
        env={"HEKATON_NOTIFY_WEBHOOK_URL": webhook.url},
    ) as stack:
        yield stack
