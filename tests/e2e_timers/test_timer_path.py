"""The timer path end to end: waits resolved by Cloud Tasks tasks with the tick at 60 s, and a
redelivered step event that must not schedule a second task (checked in the emulator's task list)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from events.steps import STEP_TOPICS, StepEvent, StepType
from shared.firestore_store import FirestoreStore
from shared.model import Rollout
from shared.timers.cloudtasks import tasks_client
from shared.timers.naming import task_id
from tests.conftest import LOCAL_CALL_TIMEOUT
from tests.e2e.specs import e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.own_stack, pytest.mark.emulators]

SERVICE = "iris-timers"
REPOSITORY = e2e_repository("timers")
BAKE_SECONDS = 4


def read_stored(stack: E2EStack, rollout_id: str) -> Rollout | None:
    """The rollout as Firestore has it (seq and due_at are not in the read API), or None."""
    store = FirestoreStore.for_project(stack.project, timeout_seconds=LOCAL_CALL_TIMEOUT)
    try:
        loaded = store.get_rollout(rollout_id)
    finally:
        store._db.close()
    return None if loaded is None else loaded.value


def stored_rollout(stack: E2EStack, rollout_id: str) -> Rollout:
    """The stored rollout, which must exist."""
    rollout = read_stored(stack, rollout_id)
    assert rollout is not None, f"no rollout {rollout_id}"
    return rollout


def pending_tasks(stack: E2EStack, rollout_id: str) -> list[Any]:
    """The emulator's pending tasks (ListTasks) that wake `rollout_id`."""
    client = tasks_client(stack.state.exports["tasks_emulator_host"])
    tasks = client.list_tasks(parent=stack.state.exports["tasks_queue"])
    return [t for t in tasks if f"-{rollout_id}-s" in t.name]


def dispatches(stack: E2EStack, rollout_id: str) -> list[dict[str, Any]]:
    """The emulator's dispatch log lines for `rollout_id`'s tasks."""
    log = Path(stack.state.exports["tasks_dispatch_log"])
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [line for line in lines if f"-{rollout_id}-s" in line["name"]]


def handled(stack: E2EStack, message_id: str) -> dict[str, Any] | None:
    """The fn-shift log record of handling `message_id` (None while not handled yet)."""
    for line in stack.log_text("fn-shift").splitlines():
        if line.startswith("{") and f"handled message {message_id}" in line:
            return dict(json.loads(line))
    return None


def test_rollout_waits_are_woken_by_tasks_and_a_redelivered_step_makes_no_second_task(
    slow_tick_stack: E2EStack,
) -> None:
    stack = slow_tick_stack
    stack.register(e2e_spec(SERVICE, REPOSITORY, steps=[10, 50, 100], bake_seconds=BAKE_SECONDS))
    first = stack.push(f"{REPOSITORY}:v1")
    assert stack.follow(SERVICE, first.rollout_id(SERVICE), timeout=40)["phase"] == "PROMOTED"

    pushed = stack.push(f"{REPOSITORY}:v2")
    rid = pushed.rollout_id(SERVICE)

    # Catch the rollout baking its first step: its wake-up is one pending task.
    baking = wait_until(
        lambda: baking_first_step(stack, rid), timeout=30, what="the rollout baking its first step"
    )
    assert baking.due_at is not None
    expected = (
        f"{stack.state.exports['tasks_queue']}/tasks/{task_id(rid, baking.seq, baking.due_at)}"
    )
    # The step schedules its wake-up right after its commit: wait for the task to be there.
    wait_until(lambda: pending_tasks(stack, rid), timeout=10, what="the bake's task")
    assert [t.name for t in pending_tasks(stack, rid)] == [expected]

    # Pub/Sub redelivers that step's event: the same message twice.
    event = StepEvent(
        type=StepType.SHIFT,
        rollout_id=rid,
        service=SERVICE,
        phase="SHIFTING",
        step_index=baking.step_index,
        cause="e2e-redelivery",
        id="e2e-redelivered-step",
    )
    body = event.to_json("e2e")
    copies = [stack.publish(STEP_TOPICS[StepType.SHIFT], body) for _ in range(2)]
    records = [
        wait_until(lambda m=m: handled(stack, m), timeout=10, what=f"shift handling {m}")
        for m in copies
    ]
    assert [r["outcome"] for r in records] == ["waiting", "waiting"]  # early: accepted, not due
    assert stored_rollout(stack, rid).seq == baking.seq  # nothing moved
    assert [t.name for t in pending_tasks(stack, rid)] == [expected]  # still one task

    # The tick runs once a minute: only the tasks can end three bakes this soon.
    ended = stack.follow(SERVICE, rid, timeout=45)
    assert ended["phase"] == "PROMOTED", ended.get("reason")
    decisions = {d["seq"]: d for d in ended["decisions"]}
    bakes = [d for d in ended["decisions"] if d["outcome"] == "step_applied"]
    assert [d["values"]["percent"] for d in bakes] == [10, 50, 100]

    sent = {line["name"].rsplit("/", 1)[1]: line for line in dispatches(stack, rid)}
    for bake in bakes:
        # The task waking this bake ran once it was due, and published the step (200); the step it
        # woke is the next entry in the log.
        woken = [line for name, line in sent.items() if f"-{rid}-s{bake['seq']}-" in name]
        assert woken, f"no task woke the bake that began at seq {bake['seq']}"
        last = max(woken, key=lambda line: line["due_time"])
        assert last["status"] == 200 and last["completed"]
        assert last["dispatch_time"] >= last["due_time"]
        assert decisions[bake["seq"] + 1]["at"] >= last["due_time"]
    assert pending_tasks(stack, rid) == []


def baking_first_step(stack: E2EStack, rollout_id: str) -> Rollout | None:
    """The stored rollout while it waits out its first bake (None before and after)."""
    rollout = read_stored(stack, rollout_id)
    if rollout is None:
        return None  # not ingested yet
    baking = rollout.phase.value == "SHIFTING" and rollout.step_index == 0
    due = rollout.due_at
    return rollout if baking and due is not None and due > datetime.now(due.tzinfo) else None
