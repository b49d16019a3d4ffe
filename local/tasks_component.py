"""The local Cloud Tasks emulator (local/tasks/) as a stack component.

Like the other components: the leader of its own process group, on a free port, healthy when a
process of our group listens on it and a GetQueue for the timers' queue (with the production
client) answers. It starts with the emulators and publishes `tasks_emulator_host`, `tasks_queue`
and `tasks_dispatch_log` (one JSON line per dispatch, read by the timer benchmark), which the
functions get as HEKATON_TIMERS=cloudtasks and its settings (local/functions_stack.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from local.components import Component, Launch, PortConflict, Ready, StackContext, free_port
from local.procs import ManagedProcess, group_listens_on
from shared.timers.naming import queue_path

NAME = "tasks"
LOCATION = "local"
# A service account name for the tasks' oauth_token, as in GCP (the emulator mints no token).
SERVICE_ACCOUNT = "hekaton-steps@{project}.iam.gserviceaccount.com"
_PROBE_TIMEOUT = 0.5


def dispatch_log(state_dir: Path) -> Path:
    """`<state>/tasks/dispatches.jsonl`: one line per dispatch attempt."""
    return state_dir / "tasks" / "dispatches.jsonl"


def tasks_component(*, timeout: float = 30.0) -> Component:
    """The Cloud Tasks emulator with the timers' queue, on a free loopback port."""

    def launch(ctx: StackContext) -> Launch:
        port = free_port()
        log = dispatch_log(ctx.state_dir)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)  # the stack's other state is fresh too
        queue = queue_path(ctx.project, LOCATION)
        argv = (
            sys.executable, "-m", "local.tasks.server",
            "--host=127.0.0.1", f"--port={port}", f"--queue={queue}", f"--dispatch-log={log}",
        )  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ctx.repo_root)}
        return Launch(
            argv=argv,
            env=env,
            cwd=ctx.repo_root,
            port=port,
            facts={"queue": queue, "dispatch_log": str(log)},
        )

    def probe(launch: Launch, process: ManagedProcess) -> Ready | None:
        assert launch.port is not None
        if "Address already in use" in process.recent_output():
            raise PortConflict(f"port {launch.port} is already in use by another process")
        if not group_listens_on(process.pgid, launch.port):
            return None
        host = f"127.0.0.1:{launch.port}"
        if not _queue_answers(host, launch.facts["queue"]):
            return None
        return Ready(
            url=f"grpc://{host}",
            exports={
                "tasks_emulator_host": host,
                "tasks_queue": launch.facts["queue"],
                "tasks_dispatch_log": launch.facts["dispatch_log"],
            },
        )

    return Component(name=NAME, launch=launch, probe=probe, timeout=timeout, attempts=3)


def _queue_answers(host: str, queue: str) -> bool:
    """True if the emulator at `host` knows `queue` (the production client's GetQueue)."""
    from google.api_core.exceptions import GoogleAPICallError, RetryError

    from shared.timers.cloudtasks import tasks_client

    try:
        tasks_client(host).get_queue(name=queue, timeout=_PROBE_TIMEOUT)
    except (GoogleAPICallError, RetryError):
        return False
    return True
