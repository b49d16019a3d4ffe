"""One local stack for every e2e test: started once in a temporary state dir, always stopped.

The fixture is package-scoped: it starts when the first e2e test needs it and is stopped right after
the last e2e test (not at the end of the whole session), so the rest of the suite does not share
the machine's two cores with thirteen idle processes. Where the emulators are missing, every e2e
test is skipped with the package to install.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from local.components import MissingComponent
from local.stack import StackOptions, StackStartFailed, up
from tests.e2e.stack_client import E2EStack
from tests.e2e.webhook_receiver import WebhookReceiver

# Everything the CLI library or a Google client might read from the environment: pointed at the
# test's stack for the duration of the e2e tests, restored afterwards.
_CLIENT_VARS = ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")


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
    spec_dir = tmp_path_factory.mktemp("e2e-specs")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HEKATON_STATE_DIR", str(state_dir))
        # As a developer would: the sink's secret URL comes from the environment `up` runs in.
        env.setenv("HEKATON_NOTIFY_WEBHOOK_URL", webhook.url)
        env.delenv("HEKATON_PROJECT", raising=False)
        env.delenv("HEKATON_STATUS_URL", raising=False)
        started_at = time.monotonic()
        try:
            started = up(StackOptions(state_dir=state_dir))
        except MissingComponent as exc:
            pytest.skip(str(exc))
        except StackStartFailed as exc:
            pytest.fail(f"{exc}\n{exc.log_tail()}", pytrace=False)
        print(f"\ne2e stack up in {time.monotonic() - started_at:.1f}s ({state_dir})")
        stack = E2EStack(started, spec_dir)
        try:
            for name, value in stack.state.client_env().items():
                if name in _CLIENT_VARS:
                    env.setenv(name, value)
            yield stack
        finally:
            stack.close()
            stopping_at = time.monotonic()
            outcomes = started.stop()
            print(
                f"\ne2e stack stopped in {time.monotonic() - stopping_at:.1f}s: "
                + ", ".join(f"{o.name} {o.outcome}" for o in outcomes if o.outcome != "stopped")
            )
            survivors = [o.name for o in outcomes if o.outcome == "still running"]
            assert not survivors, f"e2e stack components still running after stop: {survivors}"
