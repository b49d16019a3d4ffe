"""The local Cloud Tasks emulator, driven by the production client (google-cloud-tasks over gRPC).

It must do what hekaton's timers rely on in Cloud Tasks: refuse a name used before
(ALREADY_EXISTS, pending or already run), run a task no earlier than its schedule time, send the
HTTP request as given (method, headers, body), retry a target that fails, list only pending tasks.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.api_core.exceptions import AlreadyExists, InvalidArgument, NotFound
from google.cloud import tasks_v2

from local.components import RunningComponent, StackContext, start_component
from local.tasks_component import tasks_component
from shared.timers.cloudtasks import tasks_client

QUEUE = "projects/tasks-test/locations/local/queues/hekaton-timers"


@dataclass
class Target:
    """An HTTP server recording what the emulator sends; answers `statuses` in turn, then 200."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[tuple[datetime, str, str, dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Block until `count` requests arrived (fail after `timeout`)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout):
                pytest.fail(f"the emulator sent {len(self.received)} of {count} requests")


@pytest.fixture
def target() -> Iterator[Target]:
    recorder = Target()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = recorder.statuses.pop(0) if recorder.statuses else 200
            with recorder.arrived:
                recorder.received.append(
                    (datetime.now(UTC), self.command, self.path, dict(self.headers), body)
                )
                recorder.arrived.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield recorder
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningComponent]:
    state = tmp_path_factory.mktemp("tasks-state")
    ctx = StackContext(
        project="tasks-test", domain="example.com", state_dir=state, repo_root=Path.cwd()
    )
    running = start_component(tasks_component(), ctx, state / "tasks.log")
    yield running
    result = running.process.stop()
    assert result.gone and result.clean, "the emulator did not stop on SIGTERM"


@pytest.fixture(scope="module")
def client(emulator: RunningComponent) -> tasks_v2.CloudTasksClient:
    assert emulator.ready.exports["tasks_queue"] == QUEUE
    return tasks_client(emulator.ready.exports["tasks_emulator_host"])


def http_task(name: str, url: str, due: datetime, body: bytes = b"{}") -> tasks_v2.Task:
    return tasks_v2.Task(
        name=f"{QUEUE}/tasks/{name}",
        schedule_time=due,
        http_request=tasks_v2.HttpRequest(
            url=url,
            http_method=tasks_v2.HttpMethod.POST,
            headers={"Content-Type": "application/json", "X-Hekaton": "timer"},
            body=body,
            oauth_token=tasks_v2.OAuthToken(service_account_email="sa@tasks-test.iam"),
        ),
    )


def test_task_runs_at_its_schedule_time_with_its_method_headers_and_body(
    client: tasks_v2.CloudTasksClient, target: Target
) -> None:
    due = datetime.now(UTC) + timedelta(seconds=1)
    client.create_task(
        parent=QUEUE, task=http_task("on-time", target.url + "/publish", due, b'{"a":1}')
    )
    pending = list(client.list_tasks(parent=QUEUE))
    assert [t.name.rsplit("/", 1)[1] for t in pending] == ["on-time"]
    assert pending[0].http_request.oauth_token.service_account_email == "sa@tasks-test.iam"
    assert pending[0].schedule_time == due

    target.wait_for(1)
    at, method, path, headers, body = target.received[0]
    assert at >= due  # never early
    assert (method, path, body) == ("POST", "/publish", b'{"a":1}')
    assert headers["Content-Type"] == "application/json" and headers["X-Hekaton"] == "timer"
    # Completed tasks leave the list, and GetTask no longer finds them (as in Cloud Tasks).
    _wait_until_listed(client, [])
    with pytest.raises(NotFound):
        client.get_task(name=f"{QUEUE}/tasks/on-time")


def _wait_until_listed(client: tasks_v2.CloudTasksClient, names: list[str]) -> None:
    """Poll ListTasks until it names exactly `names` (tasks finish after their target answers)."""
    deadline = time.monotonic() + 30
    while (listed := _names(client)) != names and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listed == names


def _names(client: tasks_v2.CloudTasksClient) -> list[str]:
    return [t.name.rsplit("/", 1)[1] for t in client.list_tasks(parent=QUEUE)]


def test_a_name_is_used_once_pending_or_after_it_ran(
    client: tasks_v2.CloudTasksClient, target: Target
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    client.create_task(parent=QUEUE, task=http_task("once", target.url, later))
    with pytest.raises(AlreadyExists):
        client.create_task(parent=QUEUE, task=http_task("once", target.url, later))
    client.delete_task(name=f"{QUEUE}/tasks/once")

    now = datetime.now(UTC)
    client.create_task(parent=QUEUE, task=http_task("ran", target.url, now))
    target.wait_for(1)
    # The target saw the call before the emulator had its answer: wait until the task has run.
    _wait_until_listed(client, [])
    with pytest.raises(AlreadyExists):
        client.create_task(parent=QUEUE, task=http_task("ran", target.url, now))
    assert list(client.list_tasks(parent=QUEUE)) == []


def test_a_failing_target_is_retried_until_it_answers_2xx(
    client: tasks_v2.CloudTasksClient, target: Target, emulator: RunningComponent
) -> None:
    target.statuses = [503, 500]
    client.create_task(parent=QUEUE, task=http_task("retried", target.url, datetime.now(UTC)))
    target.wait_for(3)
    log = Path(emulator.ready.exports["tasks_dispatch_log"])
    deadline = time.monotonic() + 5
    lines: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in log.read_text().splitlines() if "/retried" in x]
        if len(lines) == 3:
            break
        time.sleep(0.02)
    assert [(x["status"], x["completed"]) for x in lines] == [
        (503, False),
        (500, False),
        (200, True),
    ]


def test_bad_calls_are_refused_with_the_api_s_errors(client: tasks_v2.CloudTasksClient) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=1)
    with pytest.raises(InvalidArgument, match="task name"):
        client.create_task(parent=QUEUE, task=http_task("not/a valid id", "http://x", soon))
    with pytest.raises(InvalidArgument, match="30 days"):
        client.create_task(
            parent=QUEUE, task=http_task("too-far", "http://x", soon + timedelta(days=31))
        )
    other = "projects/tasks-test/locations/local/queues/nope"
    with pytest.raises(NotFound, match="does not exist"):
        client.create_task(
            parent=other,
            task=tasks_v2.Task(name=f"{other}/tasks/a", http_request={"url": "http://x"}),
        )


def test_queue_state_backs_off_retries_and_skips_deleted_tasks() -> None:
    """The emulator's state alone, on a fake clock: retry delays double, a deleted task never runs."""
    from local.tasks.queue import Attempt, PendingTask, TaskQueues

    clock = {"now": datetime(2026, 1, 1, tzinfo=UTC)}
    queues = TaskQueues(lambda: clock["now"])
    queues.create_queue(QUEUE)

    def task(name: str, due: datetime) -> PendingTask:
        return PendingTask(
            f"{QUEUE}/tasks/{name}", due, due, clock["now"], "http://t", "POST", {}, b""
        )

    start = clock["now"]
    queues.create_task(QUEUE, task("flaky", start))
    queues.create_task(QUEUE, task("deleted", start))
    queues.delete_task(f"{QUEUE}/tasks/deleted")
    delays = []
    for status in (500, 503, 200):
        (due,) = queues.take_due()
        assert due.name.endswith("/flaky")
        completed = queues.finished(due, Attempt(clock["now"], clock["now"], status))
        if not completed:
            delays.append((due.schedule_time - clock["now"]).total_seconds())
            clock["now"] = due.schedule_time
    assert delays == [0.1, 0.2] and completed
    assert queues.take_due() == [] and queues.next_due() is None
