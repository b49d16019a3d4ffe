"""Helpers for tests that run revisions as real processes: catalogs, waits, process checks."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from local.kube.catalog import ImageCatalog
from local.kube.contracts import RevisionPhase, RevisionState
from local.kube.runtime import ProcessRuntime

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG_PATH = REPO_ROOT / "examples" / "catalog.yaml"
IRIS = "us-docker.pkg.dev/demo/models/iris"
TEST_REPO = "test.local/hekaton/fixtures"
# Marks every process a test starts, so a test can look for leftovers in /proc.
MARKER_ENV = "HEKATON_TEST_MARKER"

# Never answers /healthz: for deadlines and "not ready".
SLEEPER = ["{python}", "-c", "import time; time.sleep(600)"]
# Ignores SIGTERM: stopping it needs the SIGKILL escalation.
STUBBORN = [
    "{python}",
    "-c",
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ignoring SIGTERM', flush=True)\n"
    "time.sleep(600)",
]
# Ready at once; GET /env answers its environment, any other request is echoed back as JSON.
ECHO = [
    "{python}",
    "-c",
    """
import http.server, json, os
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/env":
            payload = dict(os.environ)
        else:
            payload = {"method": self.command, "path": self.path,
                       "headers": [[k, v] for k, v in self.headers.items()],
                       "body": body.decode("utf-8", "replace")}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Echo).serve_forever()
""",
]

T = TypeVar("T")


def catalog_with_fixtures(path: Path) -> ImageCatalog:
    """The real catalog plus test-only images (sleeper, stubborn, echo), written to `path`."""
    data = yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8"))
    data["images"][TEST_REPO] = {
        "sleeper": {"command": SLEEPER},
        "stubborn": {"command": STUBBORN},
        "echo": {
            "command": ECHO,
            "env": {"FROM_CATALOG": "catalog", "OVERRIDDEN": "catalog"},
        },
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return ImageCatalog.load(path)


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `condition` every 20 ms until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def wait_for_settled(
    runtime: ProcessRuntime, namespace: str, revision: str, timeout: float = 15.0
) -> RevisionState:
    """Wait until a revision is Ready or Failed, and return that state."""

    def settled() -> RevisionState | None:
        state = runtime.state(namespace, revision)
        return state if state and state.phase is not RevisionPhase.PENDING else None

    return wait_for(settled, timeout, f"revision {namespace}/{revision} to be Ready or Failed")


def is_reaped(pid: int) -> bool:
    """True once the process is gone and waited for (no zombie either)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def marked_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries MARKER_ENV=marker."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def get_json(port: int, path: str) -> Any:
    """GET a revision process directly and decode its JSON answer."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())
