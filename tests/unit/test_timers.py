"""Timers: task names, one task per wake-up whatever the redeliveries, and the tick as safety net."""

from __future__ import annotations

import base64
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core.exceptions import AlreadyExists, ServiceUnavailable

from events.steps import StepEvent, StepType, parse_step_event
from shared.clock import FakeClock
from shared.errors import PermanentError
from shared.phases import Phase
from shared.settings import Settings
from shared.timers.cloudtasks import CloudTasksTimers
from shared.timers.factory import timers_from_settings
from shared.timers.fake import FakeTimers
from shared.timers.naming import MAX_TASK_ID, task_id
from shared.timers.protocol import Scheduled, Timer
from shared.timers.tick_only import TickOnlyTimers
from tests.fakes import Pipeline, Published, World

DUE = datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)
QUEUE = "projects/p/locations/europe-west1/queues/hekaton-timers"
TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")


def shift_event(rollout_id: str = "iris-0123456789ab", step_index: int = 1) -> StepEvent:
    """A shift step event, as the engine would schedule it."""
    return StepEvent(
        type=StepType.SHIFT,
        rollout_id=rollout_id,
        service="iris",
        phase="SHIFTING",
        step_index=step_index,
        cause="push-v2",
    )


# --- names ------------------------------------------------------------------------------------


def test_task_id_is_deterministic_and_in_the_task_alphabet() -> None:
    """Same (rollout, seq, due) → same id; the id is a valid Cloud Tasks task id and readable."""
    name = task_id("iris-0123456789ab", 7, DUE)
    assert name == task_id("iris-0123456789ab", 7, DUE)
    assert TASK_ID.match(name)
    assert name.endswith(f"-iris-0123456789ab-s7-{round(DUE.timestamp() * 1000)}")


def test_task_id_differs_by_seq_and_due_time() -> None:
    """A later poll in the same sequence number, or the next sequence number, is another task."""
    names = {
        task_id("r", 7, DUE),
        task_id("r", 8, DUE),
        task_id("r", 7, DUE + timedelta(milliseconds=250)),
    }
    assert len(names) == 3


def test_task_id_sanitises_and_bounds_odd_rollout_ids_without_merging_them() -> None:
    """Characters outside [A-Za-z0-9_-] become `_`; ids differing only there stay distinct."""
    a, b = task_id("a/b c", 1, DUE), task_id("a.b:c", 1, DUE)
    assert TASK_ID.match(a) and TASK_ID.match(b)
    assert a != b
    long_name = task_id("x" * 5000, 123456, DUE)
    assert TASK_ID.match(long_name) and len(long_name) <= MAX_TASK_ID


# --- the engine schedules wake-ups ------------------------------------------------------------


def fire(world: World, pipeline: Pipeline, timers: FakeTimers, fired: set[str]) -> bool:
    """Deliver the earliest unfired timer at its due time, as Cloud Tasks would; False if none."""
    pending = sorted(
        ((t.due_at, name) for name, t in timers.tasks.items() if name not in fired),
        key=lambda item: item[0],
    )
    if not pending:
        return False
    due, name = pending[0]
    fired.add(name)
    if due > world.clock.now():
        world.clock.advance((due - world.clock.now()).total_seconds())
    timer = timers.tasks[name]
    body = timer.event.to_json("timer")  # the message the task publishes
    event = parse_step_event(body, expected=timer.event.type)
    pipeline.enqueue(Published(f"timer-{name}", event, body, "timer").as_message())
    return True


def run_on_timers(world: World, pipeline: Pipeline, timers: FakeTimers) -> int:
    """Run the pipeline with timers only (the tick never runs); the number of timers fired."""
    ticks = pipeline.ticks
    fired: set[str] = set()
    pipeline.drain()
    while fire(world, pipeline, timers, fired):
        pipeline.drain()
    assert pipeline.ticks == ticks
    return len(fired)


def stable_v1(timers: FakeTimers, **pipeline_options: Any) -> tuple[World, Pipeline]:
    """iris with 10 s bakes, v1 deployed (a first deploy: no steps, no bakes), 30 s later."""
    world = World.create(timers=timers)
    world.register(bake_seconds=10)
    pipeline = world.pipeline(**pipeline_options)
    world.push(pipeline, "v1")
    pipeline.run()
    world.clock.advance(30)
    return world, pipeline


def test_rollout_with_bakes_completes_on_timers_alone_each_at_its_due_time() -> None:
    """Every bake wait becomes one timer due exactly when the rollout is; no tick is needed."""
    timers = FakeTimers()
    world, pipeline = stable_v1(timers)
    timers.tasks.clear()
    world.push(pipeline, "v2")
    fired = run_on_timers(world, pipeline, timers)

    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED
    bakes = [t for t in timers.tasks.values() if t.event.type is StepType.SHIFT]
    assert [t.event.step_index for t in bakes] == [0, 1, 2]
    assert fired == len(timers.tasks) >= 3
    decisions = {d.seq: d for d in world.store.decisions(v2.id)}
    for timer in bakes:
        # The step that set the wait committed seq; the one the timer woke wrote seq + 1 at due.
        woken = decisions[timer.seq + 1]
        assert woken.at == timer.due_at
        assert woken.at - decisions[timer.seq].at == timedelta(seconds=10)


def test_a_redelivered_step_schedules_no_second_task() -> None:
    """The same step event twice (Pub/Sub redelivery) asks twice and gets one task."""
    timers = FakeTimers()
    world, pipeline = stable_v1(timers, duplicate=True)
    world.push(pipeline, "v2")
    pipeline.drain()

    rollout = world.rollouts()[0]
    assert rollout.phase is Phase.SHIFTING and rollout.due_at is not None
    assert rollout.due_at > world.clock.now()
    waiting = [t for t in timers.tasks.values() if t.seq == rollout.seq]
    assert len(waiting) == 1 and waiting[0].due_at == rollout.due_at
    assert timers.attempts > len(timers.tasks)  # the duplicates asked again: EXISTS


def test_scheduling_failure_keeps_the_step_and_the_tick_finishes_the_rollout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cloud Tasks down: each committed step stands, the failure is logged, the tick resolves waits."""
    timers = FakeTimers(fail_with=ServiceUnavailable("queue unavailable"))
    world, pipeline = stable_v1(timers)
    world.push(pipeline, "v2")
    with caplog.at_level(logging.WARNING):
        pipeline.run()

    rollout = world.rollouts()[0]
    assert rollout.phase is Phase.PROMOTED
    assert timers.attempts >= 1 and not timers.tasks
    assert pipeline.errors() == []  # no step failed (nothing was redelivered for it)
    assert pipeline.ticks > 0
    warned = [r.getMessage() for r in caplog.records if "timer not scheduled" in r.getMessage()]
    assert warned and "ServiceUnavailable" in warned[0] and "tick" in warned[0]


def test_a_wake_up_lost_after_the_commit_is_scheduled_by_the_next_delivery() -> None:
    """Scheduling failed right after the commit; the step's redelivery, still early, schedules it."""
    timers = FakeTimers()
    world, pipeline = stable_v1(timers)
    timers.fail_with = ServiceUnavailable("queue unavailable")
    world.push(pipeline, "v2")
    pipeline.drain()
    baking = world.rollouts()[0]
    assert baking.phase is Phase.SHIFTING and baking.due_at is not None and not timers.tasks

    timers.fail_with = None
    last_shift = next(p for p in reversed(world.publisher.sent) if p.event.type is StepType.SHIFT)
    pipeline.enqueue(last_shift.as_message())  # Pub/Sub redelivers the step that set the wait
    pipeline.drain()
    assert [(t.seq, t.due_at) for t in timers.tasks.values()] == [(baking.seq, baking.due_at)]
    assert world.rollouts()[0].seq == baking.seq  # the early copy changed nothing


def test_tick_only_schedules_nothing() -> None:
    """The default: no task is made, the answer says the tick will do it."""
    assert TickOnlyTimers().schedule(Timer(shift_event(), 3, DUE)) is Scheduled.TICK_ONLY


# --- Cloud Tasks ------------------------------------------------------------------------------


class RecordingTasksClient:
    """Stands in for tasks_v2.CloudTasksClient: keeps created tasks by name, ALREADY_EXISTS after."""

    def __init__(self) -> None:
        self.created: dict[str, Any] = {}

    def create_task(self, *, parent: str, task: Any, timeout: float) -> Any:
        assert task.name.startswith(parent + "/tasks/")
        if task.name in self.created:
            raise AlreadyExists(f"task {task.name} exists")
        self.created[task.name] = task
        return task


def cloud_tasks(client: RecordingTasksClient, clock: FakeClock | None = None) -> CloudTasksTimers:
    return CloudTasksTimers(
        lambda: client,
        queue=QUEUE,
        project="p",
        service_account="hekaton-steps@p.iam.gserviceaccount.com",
        publish_base="https://pubsub.googleapis.com",
        clock=clock or FakeClock(DUE - timedelta(seconds=10)),
    )


def test_cloud_task_publishes_the_step_event_to_its_topic_at_the_due_time() -> None:
    """A named HTTP task: POST to the topic's publish URL, OAuth token, body = the step message."""
    client = RecordingTasksClient()
    timer = Timer(shift_event(), 9, DUE)
    assert cloud_tasks(client).schedule(timer) is Scheduled.CREATED

    (task,) = client.created.values()
    assert task.name == f"{QUEUE}/tasks/{task_id(timer.rollout_id, 9, DUE)}"
    assert task.schedule_time == DUE
    request = task.http_request
    assert request.url == "https://pubsub.googleapis.com/v1/projects/p/topics/hekaton-shift:publish"
    assert request.http_method.name == "POST"
    assert request.oauth_token.service_account_email == "hekaton-steps@p.iam.gserviceaccount.com"
    (message,) = json.loads(request.body)["messages"]
    assert message["attributes"]["rollout"] == timer.rollout_id
    event = parse_step_event(base64.b64decode(message["data"]), expected=StepType.SHIFT)
    assert (event.rollout_id, event.phase, event.step_index, event.cause) == (
        timer.rollout_id,
        "SHIFTING",
        1,
        "push-v2",
    )


def test_cloud_task_created_twice_is_exists_not_an_error() -> None:
    """ALREADY_EXISTS (the same wake-up asked again) is success; a new due time is a new task."""
    client = RecordingTasksClient()
    timers = cloud_tasks(client)
    assert timers.schedule(Timer(shift_event(), 9, DUE)) is Scheduled.CREATED
    assert timers.schedule(Timer(shift_event(), 9, DUE)) is Scheduled.EXISTS
    assert timers.schedule(Timer(shift_event(), 9, DUE + timedelta(seconds=1))) is Scheduled.CREATED
    assert len(client.created) == 2


def test_wake_up_beyond_cloud_tasks_horizon_is_left_to_the_tick() -> None:
    """Cloud Tasks refuses schedule times over 30 days ahead: such a wait waits for the tick."""
    client = RecordingTasksClient()
    far = Timer(shift_event(), 2, DUE + timedelta(days=31))
    assert cloud_tasks(client).schedule(far) is Scheduled.TICK_ONLY
    assert client.created == {}


# --- settings ---------------------------------------------------------------------------------


def test_settings_choose_cloud_tasks_or_tick() -> None:
    """HEKATON_TIMERS picks the implementation; tick is the default."""
    assert isinstance(timers_from_settings(Settings(project="p")), TickOnlyTimers)
    chosen = timers_from_settings(
        Settings.from_env(
            {
                "HEKATON_PROJECT": "p",
                "HEKATON_TIMERS": "cloudtasks",
                "HEKATON_TASKS_QUEUE": QUEUE,
                "HEKATON_TASKS_SERVICE_ACCOUNT": "sa@p.iam.gserviceaccount.com",
            }
        )
    )
    assert isinstance(chosen, CloudTasksTimers)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HEKATON_TIMERS": "cloudtasks"}, "HEKATON_TASKS_QUEUE"),
        (
            {"HEKATON_TIMERS": "cloudtasks", "HEKATON_TASKS_QUEUE": QUEUE},
            "HEKATON_TASKS_SERVICE_ACCOUNT",
        ),
        ({"HEKATON_TIMERS": "cloud-tasks"}, "HEKATON_TIMERS"),
        ({"HEKATON_TASKS_QUEUE": "hekaton-timers"}, "HEKATON_TASKS_QUEUE"),
        ({"HEKATON_PUBSUB_PUBLISH_URL": "pubsub.local"}, "HEKATON_PUBSUB_PUBLISH_URL"),
    ],
)
def test_incomplete_or_bad_timer_settings_are_refused_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    """A function never starts half-configured: the error names the variable to fix."""
    with pytest.raises(PermanentError, match=named):
        Settings.from_env({"HEKATON_PROJECT": "p", **env})
