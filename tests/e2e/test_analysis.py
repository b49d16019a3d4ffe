"""Metric analysis on the whole stack, where evidence is missing: no users, and Prometheus stopped.

Neither may ever end in a promotion: too little traffic is not a pass, and a metrics backend that
does not answer is not a pass either. Both end at the step's evidence deadline with the reason.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from local.load import LoadRun, config_for_service
from tests.e2e.specs import E2E_NAMESPACE, e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack, traffic_pairs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

QUIET, QUIET_REPO = "iris-quiet", e2e_repository("quiet")
OUTAGE, OUTAGE_REPO = "iris-outage", e2e_repository("outage")
DEADLINE = 10.0


def judged_spec(name: str, repository: str) -> dict[str, Any]:
    """An e2e service judged every second, with a short evidence deadline."""
    return e2e_spec(
        name,
        repository,
        bake_seconds=1,
        analysis={
            "interval_seconds": 1,
            "min_requests": 20,
            "max_wait_seconds": DEADLINE,
            "latency": {"threshold_ms": 250},
        },
    )


def promote_v1(stack: E2EStack, name: str, repository: str) -> str:
    """Register the service and roll v1 out (a first deploy needs no analysis); its revision."""
    assert stack.register(judged_spec(name, repository)) == name
    v1 = stack.push(f"{repository}:v1")
    assert stack.follow(name, v1.rollout_id(name))["phase"] == "PROMOTED"
    return v1.revision(name)


def test_a_candidate_without_traffic_does_not_pass(e2e_stack: E2EStack) -> None:
    """No users at all: the candidate is never judged good; it ends at the deadline, on stable."""
    stable = promote_v1(e2e_stack, QUIET, QUIET_REPO)
    v2 = e2e_stack.push(f"{QUIET_REPO}:v2")
    ended = e2e_stack.follow(QUIET, v2.rollout_id(QUIET), timeout=DEADLINE + 60)

    assert ended["phase"] == "ROLLED_BACK", ended["reason"]
    assert ended["reason"].startswith(f"no decision within the {DEADLINE:.0f}s evidence deadline")
    outcomes = [d["outcome"] for d in ended["decisions"]]
    assert "step_passed" not in outcomes and outcomes[-1] == "analysis_failed"
    assert traffic_pairs(e2e_stack.cluster_traffic(QUIET, E2E_NAMESPACE)) == [(stable, 100)]


@contextmanager
def stopped(stack: E2EStack, component: str) -> Iterator[None]:
    """Freeze a component's whole process group (SIGSTOP), and always let it go on afterwards."""
    pgid = stack.state.components[component].group.pgid
    os.killpg(pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pgid, signal.SIGCONT)


def test_prometheus_stopped_mid_step_leads_to_no_promotion(e2e_stack: E2EStack) -> None:
    """Users keep coming, but Prometheus stops answering: no promotion, the reason says why."""
    stack = e2e_stack
    stable = promote_v1(stack, OUTAGE, OUTAGE_REPO)
    config = config_for_service(
        OUTAGE, E2E_NAMESPACE, state_dir=stack.state.state_dir, rps=30, duration=120
    )
    with LoadRun(config) as users:
        v2 = stack.push(f"{OUTAGE_REPO}:v2")
        rid = v2.rollout_id(OUTAGE)

        def judged() -> dict[str, Any] | None:
            active = stack.status(OUTAGE)["active_rollout"]
            return active if active and active["id"] == rid and active.get("analysis") else None

        wait_until(judged, timeout=60, what=f"{rid} to be judged on its first step")
        with stopped(stack, "prometheus"):
            ended = stack.follow(OUTAGE, rid, timeout=DEADLINE + 90)
        users.stop()

    assert ended["phase"] == "ROLLED_BACK", ended["reason"]
    assert "metrics unavailable" in ended["reason"]
    assert "PROMOTING" not in [d["phase_to"] for d in ended["decisions"]]
    assert traffic_pairs(stack.cluster_traffic(OUTAGE, E2E_NAMESPACE)) == [(stable, 100)]
