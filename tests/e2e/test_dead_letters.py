"""Dead letters on the real stack: a deploy whose Kubernetes API is unreachable dead-letters after the
subscription's 5 attempts, `hekaton dlq list` shows it, the cause is fixed, `hekaton dlq replay`
republishes it and the rollout completes; a second replay is refused.

The stack is this test's own: its deploy function reaches the Kubernetes API through a loopback port
where nothing listens until the test starts a forwarder there (the fix). Its tick's lost-event grace
is long, so the sweep cannot re-emit the deploy meanwhile: it is the replay that completes the rollout.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from local.components import MissingComponent
from local.stack import PlanStep, StackOptions, StackStartFailed, up
from tests.e2e.forwarder import Forwarder, reserved_port
from tests.e2e.plans import plan_with_function_env
from tests.e2e.specs import IRIS_REPOSITORY, e2e_spec
from tests.e2e.stack_client import E2EStack, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.own_stack,
    pytest.mark.emulators,
    pytest.mark.timeout(300),
]

SERVICE = "iris-dlq"


def plan_with_deploy_cut_off(options: StackOptions, kube_port: int) -> list[PlanStep]:
    """The default plan, but fn-deploy talks to the Kubernetes API at `kube_port` (nothing there yet)."""
    overrides = {
        "deploy": {"HEKATON_KUBE_SERVER": f"http://127.0.0.1:{kube_port}"},
        "tick": {"HEKATON_LOST_EVENT_GRACE_SECONDS": "600"},
    }
    return plan_with_function_env(options, overrides)


@pytest.fixture
def cut_off(tmp_path: Path) -> Iterator[tuple[E2EStack, socket.socket]]:
    """A stack of its own whose deploy function cannot reach the cluster; and that port's socket."""
    reserved = reserved_port()  # the deploy function's way to the cluster, refused for now
    kube_port = int(reserved.getsockname()[1])
    options = StackOptions(state_dir=tmp_path / "state")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HEKATON_STATE_DIR", str(options.state_dir))
        env.delenv("HEKATON_PROJECT", raising=False)
        try:
            started = up(options, plan=plan_with_deploy_cut_off(options, kube_port))
        except MissingComponent as exc:
            pytest.skip(str(exc))
        except StackStartFailed as exc:
            pytest.fail(f"{exc}\n{exc.log_tail()}", pytrace=False)
        (tmp_path / "specs").mkdir()
        stack = E2EStack(started, tmp_path / "specs")
        try:
            for name, value in stack.state.client_env().items():
                env.setenv(name, value)
            yield stack, reserved
        finally:
            reserved.close()
            stack.close()
            outcomes = started.stop()
            assert not [o.name for o in outcomes if o.outcome == "still running"]


def dead_letters(stack: E2EStack) -> list[dict[str, object]]:
    done = stack.cli("dlq", "list", "--json")
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, object]] = json.loads(done.stdout)
    return listed


def test_a_dead_lettered_deploy_is_listed_replayed_once_fixed_and_the_rollout_completes(
    cut_off: tuple[E2EStack, socket.socket],
) -> None:
    stack, reserved = cut_off
    stack.register(e2e_spec(SERVICE, IRIS_REPOSITORY))
    pushed = stack.push(f"{IRIS_REPOSITORY}:v1")
    rollout_id = pushed.rollout_id(SERVICE)

    started = time.monotonic()
    [letter] = wait_until(
        lambda: dead_letters(stack) or None, timeout=120, what="the deploy event dead-lettered"
    )
    print(f"dead-lettered and recorded {time.monotonic() - started:.1f}s after the push")
    assert letter["source_subscription"] == "hekaton-deploy-push"
    assert letter["original_topic"] == "hekaton-deploy"
    assert letter["attempts"] == 5
    assert rollout_id in str(letter["excerpt"]) and letter["replays"] == []
    listing = stack.cli("dlq", "list")
    assert listing.returncode == 0
    print(f"$ hekaton dlq list\n{listing.stdout}")
    assert f"{letter['id']}" in listing.stdout and "after 5 attempts" in listing.stdout
    assert stack.rollout(rollout_id)["phase"] == "DEPLOYING"  # stuck, not lost
    assert "Kubernetes API at http://127.0.0.1:" in stack.log_text("fn-deploy")

    kube = urlsplit(stack.state.exports["kube_server"])
    assert kube.hostname and kube.port
    with Forwarder(reserved, (kube.hostname, kube.port)):  # the fix: the API is reachable again
        replayed = stack.cli("dlq", "replay", str(letter["id"]))
        assert replayed.returncode == 0, replayed.stderr
        assert "replayed" in replayed.stdout and "hekaton-deploy" in replayed.stdout
        print(f"$ hekaton dlq replay {letter['id']}\n{replayed.stdout}")
        ended = stack.follow(SERVICE, rollout_id, timeout=120)
        assert ended["phase"] == "PROMOTED", ended.get("reason")

        again = stack.cli("dlq", "replay", str(letter["id"]))
        assert again.returncode == 1 and "replayed already" in again.stderr
        print(f"$ hekaton dlq replay {letter['id']}\n{again.stderr}")
        unknown = stack.cli("dlq", "replay", "dl-nothing-like-this")
        assert unknown.returncode == 1 and "no dead letter" in unknown.stderr
        nothing = stack.cli("dlq", "replay", "--all")
        assert nothing.returncode == 0 and "no dead letters to replay" in nothing.stdout

    [after] = dead_letters(stack)
    [replay] = after["replays"]  # type: ignore[misc]
    assert replay["topic"] == "hekaton-deploy" and replay["forced"] is False
