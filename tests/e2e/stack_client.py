"""A test's handle on the running local stack: register, push, follow rollouts, read status, run the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from cli.rollout_commands import (
    fetch,
    publish,
    publish_push,
    register_file,
    registry_message,
    wait_for_rollout,
)
from cli.target import Target
from functions.manifest import FUNCTIONS
from local.components import MissingComponent
from local.stack import StackOptions, StackStartFailed, StartedStack, up
from shared.serving import PREVIOUS_TAG
from shared.steps.ingest import revision_name, rollout_id

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
# The real console script, installed in the venv that runs pytest.
HEKATON = Path(sys.executable).with_name("hekaton")
KUBECTL_MISSING = (
    "kubectl is not available: install the Debian package kubectl (or google-cloud-cli) to compare "
    "`hekaton status` with what kubectl reports"
)
# Variables that would point the CLI at a GCP project instead of the test's stack.
_GCP_TARGET_VARS = ("HEKATON_PROJECT", "HEKATON_STATUS_URL")


def wait_until(condition: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll `condition` every 50 ms until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


@dataclass(frozen=True)
class Pushed:
    """One Artifact Registry notification published to `gcr`, and what it should start."""

    image: str
    message_id: str
    digest: str

    def rollout_id(self, service: str) -> str:
        """The id ingest gives the rollout this push starts for `service` (deterministic)."""
        return rollout_id(service, self.digest, self.message_id)

    def revision(self, service: str) -> str:
        """The Knative revision this push becomes for `service`."""
        return revision_name(service, self.digest)


def traffic_pairs(traffic: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """`[(revision, percent)]` of a status or cluster traffic list, for compact comparisons: who
    serves which share. The warm previous revision (0 %, tag `previous`, kept for a while after a
    promotion) serves nobody and is left out; tests of the warm window look at it themselves."""
    return [
        (entry["revision"], entry["percent"])
        for entry in traffic
        if not (entry.get("tag") == PREVIOUS_TAG and not entry["percent"])
    ]


class E2EStack:
    """The stack started for the e2e tests, with the operations the tests need."""

    def __init__(self, started: StartedStack, spec_dir: Path) -> None:
        self.started = started
        self.state = started.state
        self.project = self.state.project
        self.target = Target(
            project=self.project,
            status_url=self.state.exports["status_url"],
            pubsub_emulator_host=self.state.exports["pubsub_emulator_host"],
            firestore_emulator_host=self.state.exports["firestore_emulator_host"],
            control_url=self.state.exports["control_url"],
            stack_dir=self.state.state_dir,
        )
        self._spec_dir = spec_dir
        self._http = httpx.Client(timeout=30)

    def close(self) -> None:
        """Release the HTTP client."""
        self._http.close()

    # --- where things are -----------------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        """The local cluster's ingress gateway."""
        return self.state.exports["gateway_url"]

    def push_endpoint(self, topic: str) -> str:
        """The URL the Pub/Sub push subscription for `topic` delivers to (as wired by the stack)."""
        function = next(f for f in FUNCTIONS if f.trigger_topic == topic)
        url = self.state.components[f"fn-{function.name}"].url
        assert url, f"stack.json records no URL for fn-{function.name}"
        return f"{url.rstrip('/')}/projects/{self.project}/topics/{topic}"

    def function_name(self, topic: str) -> str:
        """The function triggered by `topic`."""
        return next(f.name for f in FUNCTIONS if f.trigger_topic == topic)

    def log_text(self, component: str) -> str:
        """Everything `component` has logged so far."""
        return Path(self.state.components[component].log).read_text(errors="replace")

    # --- registering and pushing ----------------------------------------------------------
    def register(self, spec: dict[str, Any]) -> str:
        """Write `spec` as a YAML file and register it the way `hekaton register FILE` does."""
        path = self._spec_dir / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        name, _created = register_file(self.target, path)
        return name

    def push(self, image: str) -> Pushed:
        """Publish the registry notification for a push of `image` (as `hekaton push IMAGE`)."""
        body = registry_message(image)
        message_id = publish_push(self.target, body)
        return Pushed(image=image, message_id=message_id, digest=body["digest"].split("@", 1)[1])

    def publish(self, topic: str, body: dict[str, str] | bytes) -> str:
        """Publish a JSON body or raw bytes to one of hekaton's topics; returns the message id."""
        return publish(self.target, topic, body)

    # --- reading --------------------------------------------------------------------------
    def get(self, path: str) -> Any:
        """GET a status API document."""
        return fetch(self.target, path)

    def status(self, service: str) -> dict[str, Any]:
        """`/services/NAME`: what `hekaton status NAME --json` prints."""
        return dict(self.get(f"/services/{service}"))

    def history(self, service: str) -> list[dict[str, Any]]:
        """`/services/NAME/rollouts`: rollouts newest first, each with its decisions."""
        return list(self.get(f"/services/{service}/rollouts")["rollouts"])

    def rollout(self, rid: str) -> dict[str, Any]:
        """`/rollouts/ID`: one rollout with its decision log."""
        return dict(self.get(f"/rollouts/{rid}"))

    def ignored(self) -> list[dict[str, Any]]:
        """`/ignored`: messages acknowledged without action, newest first (every page)."""
        found: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self.get(f"/ignored?limit=100&cursor={cursor}")
            found += page["ignored"]
            if not page["next_cursor"]:
                return found
            cursor = page["next_cursor"]

    def token(self, principal: str | None = None) -> str:
        """A token the stack's APIs accept (as `hekaton token` prints)."""
        from local.auth_keys import issue_token

        return issue_token(self.state.state_dir, principal)

    def api(
        self,
        method: str,
        path: str,
        *,
        api: str = "control",
        token: str | None = None,
        body: Any = None,
    ) -> httpx.Response:
        """A raw call of the control (or read) API, as curl would make it."""
        base = self.state.exports["control_url" if api == "control" else "status_url"]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self._http.request(
            method,
            base.rstrip("/") + path,
            headers=headers,
            content=json.dumps(body).encode() if body is not None else None,
        )

    def follow(self, service: str, rid: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for rollout `rid` of `service` to end; return it with its decisions."""
        return wait_for_rollout(self.target, service, rollout_id=rid, timeout=timeout)

    def ksvc(self, service: str, namespace: str) -> dict[str, Any]:
        """The Knative Service object as the cluster's API serves it."""
        return self._knative("services", service, namespace)

    def get_revision(self, revision: str, namespace: str) -> dict[str, Any]:
        """A Knative Revision object as the cluster's API serves it."""
        return self._knative("revisions", revision, namespace)

    def _knative(self, plural: str, name: str, namespace: str) -> dict[str, Any]:
        response = self._http.get(
            f"{self.state.exports['kube_server']}/apis/serving.knative.dev/v1/namespaces/"
            f"{namespace}/{plural}/{name}"
        )
        response.raise_for_status()
        return dict(response.json())

    def cluster_traffic(self, service: str, namespace: str) -> list[dict[str, Any]]:
        """`status.traffic` of the Knative Service, as `{revision, percent, tag}` entries."""
        return [
            {"revision": t.get("revisionName"), "percent": t.get("percent"), "tag": t.get("tag")}
            for t in self.ksvc(service, namespace).get("status", {}).get("traffic", [])
        ]

    def post_envelope(self, topic: str, envelope: dict[str, Any]) -> httpx.Response:
        """POST a Pub/Sub push envelope to the function behind `topic`, exactly where Pub/Sub does."""
        return self._http.post(self.push_endpoint(topic), json=envelope)

    def gateway_predict(self, host: str, instances: list[list[float]]) -> httpx.Response:
        """POST /predict through the ingress gateway, routed by `Host`."""
        return self._http.post(
            f"{self.gateway_url}/predict", json={"instances": instances}, headers={"Host": host}
        )

    # --- the real console script ----------------------------------------------------------
    def cli_env(self) -> dict[str, str]:
        """The environment of a user's shell whose `hekaton` finds this stack via its state dir."""
        env = {k: v for k, v in os.environ.items() if k not in _GCP_TARGET_VARS}
        env["HEKATON_STATE_DIR"] = str(self.state.state_dir)
        return env

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `.venv/bin/hekaton ARGS` as a subprocess against this stack."""
        return subprocess.run(
            [str(HEKATON), *args],
            env=self.cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        """`kubectl --kubeconfig <state>/kubeconfig ARGS -o json`; skips the test without kubectl."""
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.skip(KUBECTL_MISSING)
        assert self.state.kubeconfig, "the stack wrote no kubeconfig"
        done = subprocess.run(
            [binary, "--kubeconfig", self.state.kubeconfig, *args, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stderr}"
        return dict(json.loads(done.stdout))


# Everything the CLI library or a Google client might read from the environment: pointed at the
# test's stack for the duration of the e2e tests, restored afterwards.
_CLIENT_VARS = ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")


@contextmanager
def running_stack(
    options: StackOptions, spec_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[E2EStack]:
    """Start a stack for e2e tests (skip where the emulators are missing), always stop it.

    `env` is set in the environment `up` runs in (as a developer's shell would have it).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HEKATON_STATE_DIR", str(options.state_dir))
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        patch.delenv("HEKATON_PROJECT", raising=False)
        patch.delenv("HEKATON_STATUS_URL", raising=False)
        started_at = time.monotonic()
        try:
            started = up(options)
        except MissingComponent as exc:
            pytest.skip(str(exc))
        except StackStartFailed as exc:
            pytest.fail(f"{exc}\n{exc.log_tail()}", pytrace=False)
        print(f"\ne2e stack up in {time.monotonic() - started_at:.1f}s ({options.state_dir})")
        stack = E2EStack(started, spec_dir)
        try:
            for name, value in stack.state.client_env().items():
                if name in _CLIENT_VARS:
                    patch.setenv(name, value)
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
