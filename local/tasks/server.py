"""The emulator's process: Cloud Tasks v2 gRPC (the calls hekaton's client makes) and the dispatcher.

Served with grpcio's generic handlers over the request/response types of `google-cloud-tasks`, so
the production client (shared/timers/cloudtasks.py) talks to it exactly as to Cloud Tasks:
CreateQueue, GetQueue, CreateTask, GetTask, ListTasks, DeleteTask. A dispatcher thread sends each
HTTP task when due (method, headers, body) from a small pool, and appends one JSON line per attempt
to the dispatch log (`--dispatch-log`), which is how the benchmark and tests see fire times. It
mints no OAuth token (the Pub/Sub emulator checks none); the task's `oauth_token` is kept and
returned by GetTask/ListTasks.

    python -m local.tasks.server --port P --queue projects/X/locations/L/queues/hekaton-timers
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.cloud.tasks_v2.types import cloudtasks, queue, target
from google.cloud.tasks_v2.types import task as task_types
from google.protobuf import empty_pb2

from local.tasks.queue import Attempt, PendingTask, TaskError, TaskQueues

SERVICE = "google.cloud.tasks.v2.CloudTasks"
DISPATCH_TIMEOUT_SECONDS = 10.0
DISPATCH_WORKERS = 8


def _now() -> datetime:
    return datetime.now(UTC)


def to_pending(request: Any, now: datetime) -> PendingTask:
    """A CreateTaskRequest's task as the emulator keeps it (INVALID_ARGUMENT unless an HTTP task)."""
    task = request.task
    http = task.http_request
    if not http.url:
        raise TaskError("INVALID_ARGUMENT", "only HTTP tasks (http_request.url) are emulated")
    name = task.name or f"{request.parent}/tasks/{now.strftime('%Y%m%d%H%M%S%f')}"
    when = task.schedule_time or now  # unset: run now
    return PendingTask(
        name=name,
        schedule_time=when,
        due_time=when,
        create_time=now,
        url=http.url,
        method=target.HttpMethod(http.http_method or target.HttpMethod.POST).name,
        headers=dict(http.headers),
        body=bytes(http.body),
        oauth_service_account=http.oauth_token.service_account_email,
    )


def to_message(task: PendingTask) -> Any:
    """A pending task as the API's Task message."""
    http = target.HttpRequest(
        url=task.url,
        http_method=getattr(target.HttpMethod, task.method),
        headers=task.headers,
        body=task.body,
    )
    if task.oauth_service_account:
        http.oauth_token = target.OAuthToken(service_account_email=task.oauth_service_account)
    return task_types.Task(
        name=task.name,
        http_request=http,
        schedule_time=task.schedule_time,
        create_time=task.create_time,
        dispatch_count=len(task.attempts),
        response_count=sum(1 for a in task.attempts if a.status is not None),
    )


class Emulator:
    """The queues behind one lock, the gRPC methods, and the dispatcher."""

    def __init__(self, dispatch_log: Path | None = None) -> None:
        self.queues = TaskQueues(_now)
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._pool = futures.ThreadPoolExecutor(DISPATCH_WORKERS, thread_name_prefix="dispatch")
        self._log = dispatch_log.open("a", buffering=1) if dispatch_log else None

    # --- gRPC methods -----------------------------------------------------------------------
    def create_queue(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self._call(context, lambda: self.queues.create_queue(request.queue.name))
        return queue.Queue(name=request.queue.name, state=queue.Queue.State.RUNNING)

    def get_queue(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            if request.name not in self.queues.queues:
                context.abort(grpc.StatusCode.NOT_FOUND, f"queue {request.name} does not exist")
        return queue.Queue(name=request.name, state=queue.Queue.State.RUNNING)

    def create_task(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            created = self._call(
                context,
                lambda: self.queues.create_task(request.parent, to_pending(request, _now())),
            )
            self._lock.notify_all()
            return to_message(created)

    def get_task(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            return to_message(self._call(context, lambda: self.queues.get_task(request.name)))

    def list_tasks(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            found = self._call(context, lambda: self.queues.list_tasks(request.parent))
            start = int(request.page_token or 0)
            size = request.page_size or 1000
            page = found[start : start + size]
            more = start + size < len(found)
            return cloudtasks.ListTasksResponse(
                tasks=[to_message(t) for t in page],
                next_page_token=str(start + size) if more else "",
            )

    def delete_task(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self._call(context, lambda: self.queues.delete_task(request.name))
        return empty_pb2.Empty()

    @staticmethod
    def _call(context: grpc.ServicerContext, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except TaskError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))

    # --- dispatching ------------------------------------------------------------------------
    def run_dispatcher(self) -> None:
        """Send each task when due; wakes on every new task and at the earliest due time."""
        while not self._stop.is_set():
            with self._lock:
                due = self.queues.take_due()
                if not due:
                    next_due = self.queues.next_due()
                    wait = 1.0 if next_due is None else (next_due - _now()).total_seconds()
                    self._lock.wait(timeout=min(max(wait, 0.0), 1.0))
                    continue
            for task in due:
                self._pool.submit(self._dispatch, task)

    def _dispatch(self, task: PendingTask) -> None:
        attempt = Attempt(dispatch_time=_now())
        request = urllib.request.Request(
            task.url, data=task.body, method=task.method, headers=task.headers
        )
        detail = ""
        try:
            with urllib.request.urlopen(request, timeout=DISPATCH_TIMEOUT_SECONDS) as response:
                attempt.status = response.status
        except urllib.error.HTTPError as exc:
            attempt.status = exc.code
        except OSError as exc:
            detail = f"{type(exc).__name__}: {exc}"
        attempt.response_time = _now()
        with self._lock:
            completed = self.queues.finished(task, attempt)
            self._lock.notify_all()
        self._write_log(task, attempt, completed, detail)

    def _write_log(self, task: PendingTask, attempt: Attempt, completed: bool, detail: str) -> None:
        if self._log is None:
            return
        line = {
            "name": task.name,
            "due_time": task.due_time.isoformat(),
            "dispatch_time": attempt.dispatch_time.isoformat(),
            "response_time": attempt.response_time.isoformat() if attempt.response_time else None,
            "status": attempt.status,
            "attempt": len(task.attempts),
            "completed": completed,
            "url": task.url,
        }
        if detail:
            line["error"] = detail
        self._log.write(json.dumps(line) + "\n")

    def stop(self) -> None:
        """Stop dispatching (tasks in flight finish)."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._pool.shutdown(wait=True, cancel_futures=True)


def handlers(emulator: Emulator) -> grpc.GenericRpcHandler:
    """The CloudTasks service's methods, (de)serialised with google-cloud-tasks' own types."""

    def unary(
        method: Callable[..., Any], request_type: Any, response: Callable[[Any], bytes]
    ) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=request_type.deserialize, response_serializer=response
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "CreateQueue": unary(emulator.create_queue, cloudtasks.CreateQueueRequest, queue.Queue.serialize),
            "GetQueue": unary(emulator.get_queue, cloudtasks.GetQueueRequest, queue.Queue.serialize),
            "CreateTask": unary(emulator.create_task, cloudtasks.CreateTaskRequest, task_types.Task.serialize),
            "GetTask": unary(emulator.get_task, cloudtasks.GetTaskRequest, task_types.Task.serialize),
            "ListTasks": unary(emulator.list_tasks, cloudtasks.ListTasksRequest, cloudtasks.ListTasksResponse.serialize),
            "DeleteTask": unary(emulator.delete_task, cloudtasks.DeleteTaskRequest, empty_pb2.Empty.SerializeToString),
        },
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="A local Cloud Tasks emulator (HTTP tasks).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--queue", action="append", default=[], help="a queue to create at start")
    parser.add_argument("--dispatch-log", type=Path, help="append one JSON line per dispatch here")
    args = parser.parse_args(argv)

    emulator = Emulator(args.dispatch_log)
    for name in args.queue:
        emulator.queues.create_queue(name)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="grpc"))
    server.add_generic_rpc_handlers((handlers(emulator),))
    try:
        bound = server.add_insecure_port(f"{args.host}:{args.port}")
    except RuntimeError:
        bound = 0
    if bound == 0:  # the component reads this line as a lost port race and retries elsewhere
        print(f"cannot bind {args.host}:{args.port}: Address already in use", flush=True)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    dispatcher = threading.Thread(target=emulator.run_dispatcher, name="dispatcher", daemon=True)
    dispatcher.start()
    print(f"cloud tasks emulator serving on {args.host}:{args.port}", flush=True)
    stop.wait()
    server.stop(grace=1).wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
