"""The main job through the whole stack, under real user load measured by the real Prometheus.

iris v1 and v2 promoted, v3 (wrong answers) and v4 (crash) failed, v5 (errors and slow under load)
rolled back by the judge at its first step, v6 (disagrees on the golden set) failed, v2 serving.
One module fixture runs the job once, the way a user would: register the example service, keep user
load on it from v2 on, push each image and follow it with the real `hekaton watch`; the tests then
check what each part reports.
"""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from local.load import LoadReport, LoadRun, config_for_service
from tests.e2e.specs import IRIS_REPOSITORY, iris_spec
from tests.e2e.stack_client import E2EStack, Pushed, traffic_pairs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris"
NAMESPACE = "models"
# Short bakes keep the job fast; long enough that `hekaton watch` starts while v2 is still shifting.
BAKE_SECONDS = 1.0
FOLLOW_TIMEOUT = 150.0
# Users of iris from v2 on, as in the demo: enough for a step to be judged in seconds.
USER_RPS = 40.0
TAGS = ("v1", "v2", "v3", "v4", "v5", "v6")


@dataclass(frozen=True)
class Outcome:
    """One push of the job: the notification, how `hekaton watch` ended, the rollout it produced."""

    pushed: Pushed
    watch: subprocess.CompletedProcess[str]
    rollout: dict[str, Any]

    @property
    def revision(self) -> str:
        """The candidate revision of this push."""
        return self.pushed.revision(SERVICE)


@dataclass(frozen=True)
class MainJob:
    """Every push of the job, and the status seen while v2 was in flight."""

    outcomes: dict[str, Outcome]
    status_during_v2: dict[str, Any]
    load: LoadReport


@pytest.fixture(scope="module")
def main_job(e2e_stack: E2EStack) -> MainJob:
    """Register iris, push v1..v6 (users on from v2), follow each rollout with `hekaton watch`."""
    stack = e2e_stack
    assert stack.register(iris_spec(bake_seconds=BAKE_SECONDS)) == SERVICE
    outcomes: dict[str, Outcome] = {}
    status_during_v2: dict[str, Any] = {}
    users: LoadRun | None = None
    for tag in TAGS:
        if tag == "v2":
            config = config_for_service(
                SERVICE, NAMESPACE, state_dir=stack.state.state_dir, rps=USER_RPS, duration=900
            )
            users = LoadRun(config).start()
        pushed = stack.push(f"{IRIS_REPOSITORY}:{tag}")
        rid = pushed.rollout_id(SERVICE)
        if tag == "v2":
            # Follow "the active rollout" as a user would: once v2 is in flight, plain `hekaton watch`.
            # ... and with its live figures, once the first step has been judged.
            status_during_v2 = wait_until(
                functools.partial(_analysed_status, stack, rid),
                timeout=FOLLOW_TIMEOUT,
                what=f"rollout {rid} to be analysed",
            )
            watch = stack.cli(
                "watch", SERVICE, "--timeout", str(FOLLOW_TIMEOUT), timeout=FOLLOW_TIMEOUT + 15
            )
        else:
            watch = stack.cli(
                "watch",
                SERVICE,
                "--rollout",
                rid,
                "--timeout",
                str(FOLLOW_TIMEOUT),
                timeout=FOLLOW_TIMEOUT + 15,
            )
        outcomes[tag] = Outcome(pushed, watch, stack.rollout(rid))
    assert users is not None
    return MainJob(outcomes, status_during_v2, users.stop())


def _analysed_status(stack: E2EStack, rid: str) -> dict[str, Any] | None:
    status = stack.status(SERVICE)
    active = status["active_rollout"]
    if active is None or active["id"] != rid or not active.get("analysis"):
        return None
    return status


def _judged(rollout: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in rollout["decisions"] if "judgement" in d["values"]]


def _outcomes(rollout: dict[str, Any]) -> list[str]:
    return [d["outcome"] for d in rollout["decisions"]]


def _percents_applied(rollout: dict[str, Any]) -> list[int]:
    return [d["values"]["percent"] for d in rollout["decisions"] if d["outcome"] == "step_applied"]


def test_v1_first_deploy_is_validated_then_promoted_at_100_percent(main_job: MainJob) -> None:
    v1 = main_job.outcomes["v1"].rollout
    assert v1["phase"] == "PROMOTED", v1["reason"]
    assert v1["traffic_percent"] == 100
    # A first deploy has no stable revision to compare with: validated, then straight to 100 %.
    assert _percents_applied(v1) == []
    assert _outcomes(v1)[-2:] == ["first_deploy_validated", "promoted"]


def test_v2_is_promoted_through_10_50_100(main_job: MainJob) -> None:
    v2 = main_job.outcomes["v2"].rollout
    assert v2["phase"] == "PROMOTED", v2["reason"]
    assert _percents_applied(v2) == [10, 50, 100]
    assert "validation_passed" in _outcomes(v2)
    assert v2["decisions"][-1]["values"]["previous_stable_revision"] == (
        main_job.outcomes["v1"].revision
    )


def test_v2_is_promoted_on_measured_figures_with_the_promql_recorded(main_job: MainJob) -> None:
    """Each step was judged on real counts from Prometheus; promotion needed a PASS."""
    v2 = main_job.outcomes["v2"].rollout
    judged = _judged(v2)
    assert [d["outcome"] for d in judged] == ["step_passed", "step_passed", "last_step_passed"]
    promoted = judged[-1]
    assert promoted["values"]["judgement"]["verdict"] == "pass"
    candidate, stable = promoted["values"]["candidate"], promoted["values"]["stable"]
    assert candidate["requests"] >= 40 and stable["requests"] >= 40
    assert candidate["errors"] == 0
    assert any(
        "istio_requests_total" in q and main_job.outcomes["v2"].revision in q
        for q in promoted["values"]["queries"]
    )
    assert "not worse than allowed with 95% confidence" in promoted["reason"]


def test_status_showed_live_figures_while_v2_was_judged(main_job: MainJob) -> None:
    """`hekaton status --json` carries the running step's figures, as the status table shows them."""
    live = main_job.status_during_v2["active_rollout"]["analysis"]
    assert live["verdict"] in ("continue", "pass")
    assert live["candidate"]["requests"] >= 0 and live["stable"]["requests"] > 0
    assert live["percent"] in (10, 50, 100)


def test_v5_is_rolled_back_by_the_judge_at_its_first_step(main_job: MainJob) -> None:
    """v5 passes validation, then fails under load: FAIL at 10 % with the figures and bound logged."""
    v5 = main_job.outcomes["v5"].rollout
    assert v5["phase"] == "ROLLED_BACK", v5["reason"]
    assert _percents_applied(v5) == [10], "rolled back at its first step"
    failed = v5["decisions"][-1]
    assert failed["outcome"] == "analysis_failed"
    assert "worse than allowed with 95% confidence" in v5["reason"]
    judgement = failed["values"]["judgement"]
    assert judgement["verdict"] == "fail"
    failing = [
        m for m in (judgement["error_rate"], judgement["slow_share"]) if m["verdict"] == "fail"
    ]
    assert failing, judgement
    # The statistic and its bound are kept with the counts they came from.
    assert all(m["log_e_fail"] is not None and "candidate_lower" in m for m in failing)
    assert failed["values"]["candidate"]["requests"] > 0
    assert failed["thresholds"]["confidence"] == 0.95


def test_v6_passes_every_smoke_request_but_fails_on_the_golden_set(main_job: MainJob) -> None:
    v6 = main_job.outcomes["v6"].rollout
    assert v6["phase"] == "FAILED"
    assert v6["reason"].startswith("golden set: agreement")
    failed = v6["decisions"][-1]
    assert all(check["passed"] for check in failed["values"]["checks"])
    golden = failed["values"]["golden"]
    assert golden["agreement"] < 0.95
    assert 1 <= len(golden["disagreements"]) <= 5
    assert _percents_applied(v6) == []


def test_users_saw_v5_only_briefly_and_no_errors_from_others(main_job: MainJob) -> None:
    """The load's answers: v5 served a few requests at 10 %; v3, v4 and v6 served no user."""
    versions = main_job.load.version_counts()
    assert {"v1", "v2"} <= set(versions)
    assert not {"v3", "v4", "v6"} & set(versions)
    assert versions.get("v5", 0) < 0.2 * sum(versions.values())


def test_v3_fails_validation_with_the_mismatch_in_the_reason(main_job: MainJob) -> None:
    v3 = main_job.outcomes["v3"].rollout
    assert v3["phase"] == "FAILED"
    # v3 shifts every label by one: the smoke request for a setosa flower gets "versicolor".
    assert v3["reason"].startswith("validation failed")
    assert 'expected "setosa", got "versicolor"' in v3["reason"]
    assert _percents_applied(v3) == [], "a candidate that fails validation never takes traffic"


def test_v4_fails_with_the_exit_code_reason(main_job: MainJob, e2e_stack: E2EStack) -> None:
    v4 = main_job.outcomes["v4"].rollout
    assert v4["phase"] == "FAILED"
    assert "ExitCode1" in v4["reason"]
    assert _outcomes(v4)[-1] == "revision_failed"
    # The crashed container's log is kept with the stack's other logs, where `down` leaves it.
    revision = main_job.outcomes["v4"].revision
    log = e2e_stack.state.state_dir / "logs" / "revisions" / f"{NAMESPACE}_{revision}.log"
    assert "cannot load model weights" in log.read_text()


def test_traffic_stays_100_percent_on_v2(main_job: MainJob, e2e_stack: E2EStack) -> None:
    v2_revision = main_job.outcomes["v2"].revision
    assert traffic_pairs(e2e_stack.cluster_traffic(SERVICE, NAMESPACE)) == [(v2_revision, 100)]
    assert e2e_stack.status(SERVICE)["stable_revision"] == v2_revision


def test_status_json_has_the_fields_the_issue_lists(main_job: MainJob, e2e_stack: E2EStack) -> None:
    done = e2e_stack.cli("status", SERVICE, "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["service"] == SERVICE
    assert status["namespace"] == NAMESPACE
    assert status["stable_revision"] == main_job.outcomes["v2"].revision
    assert status["traffic"] == [
        {"revision": main_job.outcomes["v2"].revision, "percent": 100, "tag": "stable"}
    ]
    assert status["active_rollout"] is None
    v6 = main_job.outcomes["v6"]
    last = status["last_rollout"]
    assert {k: last[k] for k in ("id", "phase", "image", "revision")} == {
        "id": v6.pushed.rollout_id(SERVICE),
        "phase": "FAILED",
        "image": f"{IRIS_REPOSITORY}:v6@{v6.pushed.digest}",
        "revision": v6.revision,
    }
    assert "golden set" in last["reason"]
    # While v2 was in flight the same command showed it as the active rollout.
    active = main_job.status_during_v2["active_rollout"]
    v2 = main_job.outcomes["v2"]
    assert active["id"] == v2.pushed.rollout_id(SERVICE)
    assert active["image"] == f"{IRIS_REPOSITORY}:v2@{v2.pushed.digest}"
    assert active["digest"] == v2.pushed.digest
    assert active["revision"] == v2.revision
    assert active["phase"] not in ("PROMOTED", "FAILED", "ROLLED_BACK", "SUPERSEDED")
    assert isinstance(active["step"], int)
    assert active["started_at"]


@pytest.mark.kubectl
def test_status_traffic_equals_what_kubectl_reports(main_job: MainJob, e2e_stack: E2EStack) -> None:
    ksvc = e2e_stack.kubectl_json("get", "ksvc", SERVICE, "-n", NAMESPACE)
    done = e2e_stack.cli("status", SERVICE, "--json")
    assert done.returncode == 0, done.stderr
    from_kubectl = [
        {"revision": t["revisionName"], "percent": t["percent"], "tag": t.get("tag")}
        for t in ksvc["status"]["traffic"]
    ]
    assert json.loads(done.stdout)["traffic"] == from_kubectl
    assert from_kubectl[0]["revision"] == main_job.outcomes["v2"].revision


def test_history_json_is_newest_first_with_explained_decisions(
    main_job: MainJob, e2e_stack: E2EStack
) -> None:
    done = e2e_stack.cli("history", SERVICE, "--json")
    assert done.returncode == 0, done.stderr
    history = json.loads(done.stdout)
    newest_first = [main_job.outcomes[tag] for tag in reversed(TAGS)]
    assert [r["id"] for r in history] == [o.pushed.rollout_id(SERVICE) for o in newest_first]
    for rollout, outcome in zip(history, newest_first, strict=True):
        assert {"id", "phase", "image", "digest", "revision", "reason", "decisions"} <= set(rollout)
        assert rollout["digest"] == outcome.pushed.digest
        assert rollout["revision"] == outcome.revision
        assert rollout["phase"] == outcome.rollout["phase"]
        assert rollout["reason"]
        decisions = rollout["decisions"]
        assert [d["seq"] for d in decisions] == list(range(1, len(decisions) + 1))
        assert all(d["message_id"] for d in decisions), decisions
        # The first decision was caused by the registry notification itself.
        assert decisions[0]["message_id"] == outcome.pushed.message_id


def test_watch_exits_0_on_promotion_and_non_zero_on_failure(main_job: MainJob) -> None:
    for tag, expected_phase, promoted in (
        ("v1", "PROMOTED", True),
        ("v2", "PROMOTED", True),
        ("v3", "FAILED", False),
        ("v4", "FAILED", False),
        ("v5", "ROLLED_BACK", False),
        ("v6", "FAILED", False),
    ):
        outcome = main_job.outcomes[tag]
        watch = outcome.watch
        assert (watch.returncode == 0) is promoted, (tag, watch.returncode, watch.stderr)
        assert watch.returncode in (0, 1), (tag, watch.stderr)
        assert f"{outcome.pushed.rollout_id(SERVICE)} ended {expected_phase}" in watch.stdout


def test_gateway_serves_the_promoted_model(main_job: MainJob, e2e_stack: E2EStack) -> None:
    host = f"{SERVICE}.{NAMESPACE}.example.com"
    for _ in range(10):
        response = e2e_stack.gateway_predict(host, [[5.1, 3.5, 1.4, 0.2]])
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": ["setosa"], "model_version": "v2"}
