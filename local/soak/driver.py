"""Drive a soak scenario on a running local stack and collect what hekaton recorded.

Every call that crosses a faulty part (the read and control APIs reach Firestore through the
outage proxy) is retried until a deadline: the soak measures whether hekaton *converges*, so a
call answered 5xx during an outage is asked again, never counted as a verdict. Commands carry a
fixed Idempotency-Key, so a retried command is applied once.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cli.api_client import CommandError, Refusal, control, fetch
from cli.rollout_commands import TERMINAL, publish_push, register_file, registry_message
from cli.target import Target
from local.soak.scenario import PlannedRollout, PlannedService
from shared.steps.ingest import rollout_id

T = TypeVar("T")

POLL_SECONDS = 0.25
CALL_DEADLINE_SECONDS = 60.0
SETTLE_SECONDS = 60.0


class Lost(RuntimeError):
    """A rollout that did not end (or never started) within its deadline."""


def patiently(call: Callable[[], T], *, what: str, deadline: float = CALL_DEADLINE_SECONDS) -> T:
    """`call()` retried on unreachable/5xx answers until `deadline` seconds have passed."""
    ends = time.monotonic() + deadline
    while True:
        try:
            return call()
        except Refusal:
            raise  # hekaton said no (4xx): asking again would change nothing
        except CommandError:  # unreachable, or an outage (5xx: Unavailable)
            if time.monotonic() >= ends:
                raise
        time.sleep(POLL_SECONDS)  # poll pace of a retried call, not a race-hiding wait


@dataclass
class RolloutResult:
    """What one planned push became."""

    service: str
    index: int
    tag: str
    rollout_id: str | None = None
    phase: str | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    seconds: float | None = None  # push to terminal phase
    lost: str | None = None  # why it is counted lost


@dataclass
class ServiceResult:
    """A service's rollouts and the traffic it ended with."""

    name: str
    rollouts: list[RolloutResult]
    traffic: list[tuple[str, int]] = field(default_factory=list)


def stack_target(state: Any) -> Target:
    """The CLI's Target for a started stack."""
    exports = state.exports
    return Target(
        project=state.project,
        status_url=exports["status_url"],
        pubsub_emulator_host=exports["pubsub_emulator_host"],
        firestore_emulator_host=exports["firestore_emulator_host"],
        control_url=exports["control_url"],
        stack_dir=state.state_dir,
    )


class ServiceDriver:
    """Runs one service's pushes in order, issuing its planned commands."""

    def __init__(self, target: Target, service: PlannedService, spec_dir: Path, timeout: float):
        self.target = target
        self.service = service
        self.spec_dir = spec_dir
        self.timeout = timeout
        self.stopped = threading.Event()

    def run(self) -> ServiceResult:
        """Register, push each rollout and follow it to its end; then read the final traffic."""
        path = self.spec_dir / f"{self.service.name}.yaml"
        path.write_text(yaml.safe_dump(self.service.spec(), sort_keys=False))
        patiently(lambda: register_file(self.target, path), what=f"register {self.service.name}")
        results = [self._one(p) for p in self.service.rollouts if not self.stopped.is_set()]
        return ServiceResult(self.service.name, results, self._settled_traffic())

    def _settled_traffic(self) -> list[tuple[str, int]]:
        """The traffic the cluster reports once it serves the service's resting route (the stable
        revision at 100 %, plus the warm previous one at 0 % while the record keeps it), or what
        it still shows at the deadline. The Service's status trails its spec while the Route
        reconciles, and a late write to an idle service's route waits for the tick's repair."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            status = patiently(
                lambda: fetch(self.target, f"/services/{self.service.name}"), what="status"
            )
            traffic = sorted(
                (t["revision"], int(t["percent"])) for t in status.get("traffic") or []
            )
            stable, previous = status.get("stable_revision"), status.get("previous_revision")
            resting = sorted([(stable, 100)] + ([(previous, 0)] if previous else []))
            # With no stable revision (a failed first deploy) there is nothing to settle on.
            settled = stable is None or traffic == resting
            if settled or time.monotonic() >= deadline or self.stopped.is_set():
                return traffic
            time.sleep(POLL_SECONDS)

    def _one(self, planned: PlannedRollout) -> RolloutResult:
        result = RolloutResult(planned.service, planned.index, planned.tag)
        body = registry_message(f"{self.service.repository}:{planned.tag}")
        began = time.monotonic()
        message_id = publish_push(self.target, body)
        rid = rollout_id(planned.service, body["digest"].split("@", 1)[1], message_id)
        result.rollout_id = rid
        issued: set[str] = set()
        deadline = began + self.timeout
        while time.monotonic() < deadline and not self.stopped.is_set():
            try:
                rollout = fetch(self.target, f"/rollouts/{rid}")
            except CommandError:
                time.sleep(POLL_SECONDS)  # not born yet, or the read API is in an outage
                continue
            if rollout["phase"] in TERMINAL:
                result.phase = rollout["phase"]
                result.decisions = list(rollout.get("decisions", []))
                result.seconds = time.monotonic() - began
                return result
            self._steer(planned, rollout, issued)
            time.sleep(POLL_SECONDS)
        result.lost = f"not ended within {self.timeout:.0f}s"
        return result

    def _steer(self, planned: PlannedRollout, rollout: dict[str, Any], issued: set[str]) -> None:
        """Issue the planned command(s) once the rollout is at the planned step."""
        command = planned.command
        if command is None:
            return
        phase = rollout["phase"]
        # "At step k" is once step k's traffic is applied (its decision is in the log): the
        # logical place, the same in a run whose shift event is late.
        at_step = phase == "SHIFTING" and any(
            d["outcome"] == "step_applied" and int(d.get("step_index") or 0) == command.at_step
            for d in rollout.get("decisions", [])
        )
        if command.action != "pause-resume":
            if at_step and "done" not in issued:
                self._command(planned, command.action)
                issued.add("done")
            return
        # pause, then (seen PAUSED) resume, then (back at the step) promote.
        if at_step and "pause" not in issued:
            self._command(planned, "pause")
            issued.add("pause")
        elif phase == "PAUSED" and "resume" not in issued:
            self._command(planned, "resume")
            issued.add("resume")
        elif at_step and "resume" in issued and "promote" not in issued:
            self._command(planned, "promote")
            issued.add("promote")

    def _command(self, planned: PlannedRollout, action: str) -> None:
        key = f"soak-{planned.service}-{planned.index}-{action}"
        path = f"/services/{planned.service}/{action}"
        body = {
            "reason": f"soak: {action} at step {planned.command.at_step if planned.command else 0}"
        }
        try:
            patiently(
                lambda: control(self.target, "POST", path, body, key=key),
                what=f"{action} {planned.service}",
            )
        except CommandError as failed:  # shows in the comparison as a different decision log
            said = "refused" if isinstance(failed, Refusal) else "failed"
            print(
                f"soak: {action} {planned.service} #{planned.index} {said}: {failed}",
                file=sys.stderr,
            )


def drive(
    target: Target,
    scenario: list[PlannedService],
    spec_dir: Path,
    *,
    timeout: float,
    parallel: int,
) -> list[ServiceResult]:
    """Every service's pushes, services in parallel (each service's rollouts in order)."""
    spec_dir.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="soak")
    drivers = [ServiceDriver(target, s, spec_dir, timeout) for s in scenario]
    try:
        futures = [pool.submit(d.run) for d in drivers]
        return [f.result() for f in futures]
    except BaseException:  # interrupted: the drivers stop at their next poll, then we go
        for d in drivers:
            d.stopped.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
