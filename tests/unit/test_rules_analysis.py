"""The shift step judged on measured traffic: promotion on evidence, automatic rollback, deadlines.

Users are simulated (`SimulatedUsers`): counted by a fake mesh, scraped into a fake Prometheus and
measured by the production observer, so these tests drive the real judge, policy and step.
"""

from __future__ import annotations

import random
from typing import Any

from shared.errors import PermanentError
from shared.phases import Phase
from tests.fakes import Behaviour, FakeResponse, Pipeline, World, decision_trail, digest_of

RPS = 60.0
DEADLINE = 120.0


def analysis(**overrides: Any) -> dict[str, Any]:
    """An analysis section evaluated every 5 s with a short evidence deadline."""
    section: dict[str, Any] = {
        "enabled": True,
        "interval_seconds": 5,
        "max_wait_seconds": DEADLINE,
        "latency": {"threshold_ms": 250},
    }
    section.update(overrides)
    return section


def stable_v1(rps: float = RPS, **section: Any) -> tuple[World, Pipeline]:
    """v1 promoted (a first deploy needs no analysis), users at `rps`, v2 not yet pushed."""
    world = World.create()
    world.register(analysis=analysis(**section))
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()
    assert world.only_rollout(digest_of("v1")).phase is Phase.PROMOTED
    world.users.rps = rps
    world.users.behave(world.revision("v1"), Behaviour(error_rate=0.001))
    return world, pipeline


def analysed(world: World, tag: str) -> list[Any]:
    """The decisions of a tag's rollout that carry measured figures."""
    rollout = world.only_rollout(digest_of(tag))
    return [d for d in world.store.decisions(rollout.id) if "judgement" in d.values]


def test_a_good_candidate_is_promoted_on_measured_evidence() -> None:
    """Same error rate as stable: every step passes on counts, and the log keeps the figures."""
    world, pipeline = stable_v1()
    world.users.behave(world.revision("v2"), Behaviour(error_rate=0.001))
    world.push(pipeline, "v2")
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.PROMOTED, v2.reason
    steps = analysed(world, "v2")
    assert [d.outcome for d in steps] == ["step_passed", "step_passed", "last_step_passed"]
    last = steps[-1]
    assert last.values["candidate"]["requests"] > 1000 and last.values["stable"]["requests"] > 0
    assert last.values["judgement"]["verdict"] == "pass"
    assert any("istio_requests_total" in q for q in last.values["queries"])
    assert last.thresholds["confidence"] == 0.95 and "error_rate" in last.thresholds
    assert "promote" in last.reason


def test_a_failing_candidate_is_rolled_back_at_its_first_step() -> None:
    """25 % errors: FAIL at 10 %, stable back to 100 %, the reason and the raw figures logged."""
    world, pipeline = stable_v1()
    world.users.behave(world.revision("v2"), Behaviour(error_rate=0.25, slow_rate=0.9))
    world.push(pipeline, "v2")
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.ROLLED_BACK
    assert world.traffic() == {world.revision("v1"): 100}
    failed = world.store.decisions(v2.id)[-1]
    assert (failed.outcome, failed.step_index) == ("analysis_failed", 0)
    assert v2.reason is not None and "error rate 2" in v2.reason
    assert "worse than allowed with 95% confidence" in v2.reason
    candidate = failed.values["candidate"]
    assert candidate["errors"] / candidate["requests"] >= 0.2
    assert failed.values["judgement"]["verdict"] == "fail"
    assert failed.thresholds["error_rate"]["max_ratio"] == 2.0
    # Judged in seconds, not after a fixed interval: a handful of 5 s evaluations at most.
    applied = next(d for d in world.store.decisions(v2.id) if d.outcome == "step_applied")
    assert (failed.at - applied.at).total_seconds() <= 30


def test_a_candidate_without_traffic_never_passes() -> None:
    """No users: nothing to judge; at the evidence deadline the rollout ends, traffic on stable."""
    world, pipeline = stable_v1(rps=0)
    world.push(pipeline, "v2")
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.ROLLED_BACK
    assert v2.reason is not None and v2.reason.startswith(
        f"no decision within the {DEADLINE:.0f}s evidence deadline"
    )
    assert "step_passed" not in [d.outcome for d in world.store.decisions(v2.id)]
    assert world.traffic() == {world.revision("v1"): 100}


def test_thin_evidence_can_fail_at_once_when_the_spec_says_so() -> None:
    """on_thin_evidence: fail ends the step at its bake end instead of waiting for the deadline."""
    world, pipeline = stable_v1(rps=0, on_thin_evidence="fail")
    world.push(pipeline, "v2")
    pipeline.run()
    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.ROLLED_BACK
    assert v2.reason is not None and v2.reason.startswith("evidence too thin after the bake")


def test_top_up_sends_the_services_own_requests_to_the_candidate() -> None:
    """Too few users: hekaton sends smoke requests to the candidate's tag URL, and they count."""
    world, pipeline = stable_v1(rps=2, on_thin_evidence="top_up", top_up_requests=100)
    world.serving.respond(world.revision("v2"), FakeResponse(200, {"ok": True}))
    world.push(pipeline, "v2")
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.PROMOTED, v2.reason
    figures = v2.analysis
    assert figures["top_up_sent"] >= 100
    first = analysed(world, "v2")[0]
    # At 2 users/s a 10 % step sees ~0.2 user requests/s: the step's evidence came from the top-up.
    assert first.values["candidate"]["requests"] >= 100


def test_metrics_unavailable_is_never_a_pass() -> None:
    """Prometheus down mid-step: no promotion, the live figures say why, the deadline ends it."""
    world, pipeline = stable_v1()
    outage(world, pipeline, "connection refused by 127.0.0.1:9090", seconds=10)
    live = world.only_rollout(digest_of("v2")).analysis["last"]
    assert live["problem"].startswith("metrics unavailable") and "refused" in live["problem"]
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.ROLLED_BACK
    assert v2.reason is not None and "metrics unavailable" in v2.reason
    assert world.traffic() == {world.revision("v1"): 100}
    assert not pipeline.dead_lettered


def test_metrics_that_come_back_in_time_let_the_rollout_finish() -> None:
    """A short outage only delays the judgement: the same candidate is promoted afterwards."""
    world, pipeline = stable_v1()
    outage(world, pipeline, "timed out", seconds=15)
    world.users.provider.down = None
    pipeline.run()
    assert world.only_rollout(digest_of("v2")).phase is Phase.PROMOTED


def test_duplicated_and_shuffled_delivery_gives_the_same_decisions() -> None:
    """At-least-once delivery with analysis: the same verdicts and log as a clean run."""
    trails = []
    for duplicate in (False, True):
        world, _ = stable_v1()
        world.users.behave(world.revision("v2"), Behaviour(error_rate=0.25))
        pipeline = world.pipeline(duplicate=duplicate, rng=random.Random(7) if duplicate else None)
        world.push(pipeline, "v2")
        pipeline.run()
        v2 = world.only_rollout(digest_of("v2"))
        trails.append((v2.phase, decision_trail(world.store.decisions(v2.id))))
    assert trails[0] == trails[1]
    assert trails[0][0] is Phase.ROLLED_BACK


def outage(world: World, pipeline: Pipeline, reason: str, *, seconds: int) -> None:
    """Push v2, run until its first step is applied, then make Prometheus fail for `seconds`."""
    world.push(pipeline, "v2")
    pipeline.run(until=lambda: _step_applied(world))
    world.users.provider.down = reason
    for _ in range(seconds):
        world.clock.advance(1)
        pipeline.tick()
        pipeline.drain()


def _step_applied(world: World) -> bool:
    found = [r for r in world.rollouts() if r.digest == digest_of("v2")]
    return bool(found) and found[0].phase is Phase.SHIFTING and found[0].step_applied


def test_a_rollback_whose_traffic_write_is_refused_keeps_its_verdict_and_says_so() -> None:
    """The cluster refuses the return to stable (a right taken away): the decision is still the
    analysis's own, with its figures, and says where the traffic still is."""
    world, pipeline = stable_v1()
    world.users.behave(world.revision("v2"), Behaviour(error_rate=0.25, slow_rate=0.9))
    world.push(pipeline, "v2")
    pipeline.run(
        until=lambda: any(
            r.digest == digest_of("v2") and r.phase is Phase.SHIFTING and r.traffic_percent == 10
            for r in world.rollouts()
        )
    )
    refused = PermanentError("patch Knative Service models/iris was refused (403): forbidden")
    world.serving.fail_next("set_traffic", refused)
    pipeline.run()

    v2 = world.only_rollout(digest_of("v2"))
    assert v2.phase is Phase.ROLLED_BACK and v2.traffic_percent == 10
    failed = world.store.decisions(v2.id)[-1]
    assert failed.outcome == "analysis_failed"
    assert failed.values["judgement"]["verdict"] == "fail"
    assert failed.thresholds["error_rate"]["max_ratio"] == 2.0
    assert (
        "traffic not returned: patch Knative Service models/iris was refused"
        in (failed.values["traffic"])
    )
    assert "error rate 2" in failed.reason
    assert "the candidate may still take 10 %" in failed.reason
