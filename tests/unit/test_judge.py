"""The sequential judge: verdicts, error bounds at any stopping time, reasons, state."""

from __future__ import annotations

import json
import random

import pytest

from shared.analysis.counts import ArmCounts
from shared.analysis.criteria import Criteria, RateLimits, SlowLimits
from shared.analysis.judge import JudgeState, Verdict, evaluate, judge

CRITERIA = Criteria()


def _judge(candidate: ArmCounts, stable: ArmCounts, criteria: Criteria = CRITERIA):
    return evaluate(None, candidate, stable, 0, criteria)[1]


def test_the_issue_example_fails_with_its_reason() -> None:
    j = _judge(ArmCounts(125, 31, 0), ArmCounts(1130, 0, 0))
    assert j.verdict is Verdict.FAIL
    assert j.reason == (
        "error rate 24.8% (31/125) vs stable 0.0% (0/1,130): worse than allowed with 95% confidence"
    )


def test_guard_rail_fails_a_clearly_broken_candidate_without_stable_traffic() -> None:
    # Three requests, three errors, no stable traffic at all: the guard rail alone decides.
    j = _judge(ArmCounts(3, 3, 0), ArmCounts())
    assert j.verdict is Verdict.FAIL
    assert "above the 5.0% guard rail with 95% confidence" in j.reason
    assert j.metrics[0].guard_rail


def test_no_traffic_is_never_a_pass() -> None:
    j = _judge(ArmCounts(), ArmCounts())
    assert j.verdict is Verdict.CONTINUE
    assert j.reason.startswith("no candidate traffic yet")
    assert j.needed_requests is not None and j.needed_requests >= CRITERIA.min_requests
    # Lots of stable traffic does not make a silent candidate pass either.
    assert _judge(ArmCounts(), ArmCounts(100_000, 100, 9_000)).verdict is Verdict.CONTINUE


def test_a_few_clean_requests_are_not_a_pass() -> None:
    for n in (1, 10, 49, 200):
        assert _judge(ArmCounts(n, 0, 0), ArmCounts(10_000, 10, 900)).verdict is not Verdict.PASS


def test_a_good_candidate_passes_with_enough_traffic() -> None:
    j = _judge(ArmCounts(20_000, 20, 1_800), ArmCounts(20_000, 20, 1_800))
    assert j.verdict is Verdict.PASS
    assert j.reason.endswith("not worse than allowed with 95% confidence")
    assert j.needed_requests == 0


def test_small_absolute_increase_is_not_a_regression() -> None:
    # 0.0 % vs 0.05 %: within max_increase, so with enough traffic it passes, never fails.
    j = _judge(ArmCounts(50_000, 25, 0), ArmCounts(50_000, 0, 0))
    assert j.verdict is Verdict.PASS


def test_a_bad_candidate_fails_on_each_metric() -> None:
    errors = _judge(ArmCounts(5_000, 50, 450), ArmCounts(10_000, 10, 900))
    assert errors.verdict is Verdict.FAIL and errors.reason.startswith("error rate 1.0% (50/5,000)")
    slow = _judge(ArmCounts(2_000, 2, 400), ArmCounts(5_000, 5, 450))
    assert slow.verdict is Verdict.FAIL
    assert slow.reason == (
        "slow share (>500 ms) 20.0% (400/2,000) vs stable 9.0% (450/5,000): "
        "worse than allowed with 95% confidence"
    )


def test_continue_says_how_much_more_it_needs() -> None:
    j = _judge(ArmCounts(300, 0, 27), ArmCounts(3_000, 3, 270))
    assert j.verdict is Verdict.CONTINUE
    assert j.needed_requests is not None and j.needed_requests > 0
    assert f"about {j.needed_requests:,} more candidate requests needed" in j.reason
    # With the rates unchanged and that much more traffic (stable growing alongside), it decides.
    k = j.needed_requests * 2
    later = _judge(
        ArmCounts(300 + k, 0, 27 + k * 9 // 100),
        ArmCounts(3_000 + 10 * k, 3 + k // 100, 270 + k * 9 // 10),
    )
    assert later.verdict is Verdict.PASS


def test_values_and_thresholds_are_json() -> None:
    j = _judge(ArmCounts(125, 31, 10), ArmCounts(1130, 0, 100))
    values, thresholds = json.loads(json.dumps(j.values())), json.loads(json.dumps(j.thresholds()))
    err = values["error_rate"]
    assert err["candidate"] == {"events": 31, "requests": 125}
    assert err["stable"] == {"events": 0, "requests": 1130}
    assert err["candidate_lower"] > err["allowed"]
    assert err["log_e_fail"] >= thresholds["error_rate"]["log_e_to_fail"]
    assert values["slow_share"]["verdict"] in {"pass", "fail", "continue"}
    assert thresholds["confidence"] == 0.95
    assert thresholds["error_rate"]["fail_alpha"] == pytest.approx(0.025)
    assert thresholds["error_rate"]["pass_alpha"] == pytest.approx(0.05)


def test_state_round_trips_through_json() -> None:
    state, _ = evaluate(None, ArmCounts(10, 1, 2), ArmCounts(90, 0, 8), 0, CRITERIA)
    state, _ = evaluate(state, ArmCounts(60, 2, 5), ArmCounts(140, 1, 12), 1, CRITERIA)
    again = JudgeState.from_dict(json.loads(json.dumps(state.as_dict())))
    assert again == state
    assert JudgeState.from_dict(None) == JudgeState()


def test_state_pools_increments_and_survives_a_counter_reset() -> None:
    state, _ = evaluate(None, ArmCounts(100, 1, 5), ArmCounts(900, 1, 40), 0, CRITERIA)
    state, _ = evaluate(state, ArmCounts(150, 1, 6), ArmCounts(1000, 1, 45), 1, CRITERIA)
    assert state.candidate == ArmCounts(150, 1, 6)
    assert state.step_candidate == ArmCounts(50, 0, 1)  # step 1 began after the first look
    # The same evaluation delivered twice adds nothing.
    again, _ = evaluate(state, ArmCounts(150, 1, 6), ArmCounts(1000, 1, 45), 1, CRITERIA)
    assert (again.candidate, again.stable) == (state.candidate, state.stable)
    # The exporter restarted: counts start again from zero. Nothing is subtracted or counted
    # twice; counting resumes from the new values.
    state, _ = evaluate(state, ArmCounts(20, 1, 1), ArmCounts(30, 0, 2), 1, CRITERIA)
    assert state.candidate == ArmCounts(150, 1, 6)
    state, _ = evaluate(state, ArmCounts(40, 2, 2), ArmCounts(60, 0, 3), 1, CRITERIA)
    assert state.candidate == ArmCounts(170, 2, 7)
    assert state.stable == ArmCounts(1030, 1, 46)
    assert state.step_candidate == ArmCounts(70, 1, 2)


def test_judge_is_pure() -> None:
    state = JudgeState(candidate=ArmCounts(500, 5, 50), stable=ArmCounts(500, 0, 40))
    assert judge(state, CRITERIA) == judge(state, CRITERIA)


def test_criteria_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimits(max_ratio=0.5)
    with pytest.raises(ValueError):
        SlowLimits(latency_threshold_ms=0)
    with pytest.raises(ValueError):
        Criteria(confidence=1.0)


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


def _canary_streams(
    stable_rates: tuple[float, float], candidate_rates: tuple[float, float], seed: int
):
    """Yield, per stream, the judge's verdicts at every 5 s look of a 10 -> 50 -> 100 % canary."""
    rng = random.Random(seed)
    for _ in range(200):
        cand, stab = [0, 0, 0], [0, 0, 0]
        state = None
        verdicts = []
        for look in range(30):  # 10 looks per step, 10 requests/s
            share = (0.1, 0.5, 1.0)[look // 10]
            nc, ns = _binomial(rng, 50, share), 0
            ns = 50 - nc
            for arm, n, (err, slow) in ((cand, nc, candidate_rates), (stab, ns, stable_rates)):
                arm[0] += n
                arm[1] += _binomial(rng, n, err)
                arm[2] += _binomial(rng, n, slow)
            state, j = evaluate(
                state, ArmCounts(*cand), ArmCounts(*stab), look // 10, CRITERIA, estimate=False
            )
            verdicts.append(j.verdict)
        yield verdicts


def _margin(alpha: float, n: int) -> float:
    return alpha + 3 * (alpha * (1 - alpha) / n) ** 0.5


def test_false_fail_rate_at_any_stopping_time_is_at_most_alpha() -> None:
    # The hardest good candidate: exactly at the allowed limit on both metrics (stable 2 %
    # errors and 10 % slow, where the limits are 4 % and 13 %, below the guard rails).
    at_limit = (CRITERIA.errors.allowed(0.02), CRITERIA.slow.allowed(0.10))
    assert at_limit[0] < CRITERIA.errors.max_rate and at_limit[1] < CRITERIA.slow.max_rate
    streams = list(_canary_streams((0.02, 0.10), at_limit, seed=11))
    ever_failed = sum(Verdict.FAIL in v for v in streams)
    assert ever_failed / len(streams) <= _margin(CRITERIA.alpha, len(streams))


def test_false_pass_rate_at_any_stopping_time_is_at_most_alpha() -> None:
    # The hardest bad candidate: exactly at the limit on errors, clearly fine on latency.
    streams = list(_canary_streams((0.02, 0.10), (CRITERIA.errors.allowed(0.02), 0.10), seed=12))
    ever_passed = sum(Verdict.PASS in v for v in streams)
    assert ever_passed / len(streams) <= _margin(CRITERIA.alpha, len(streams))


def test_power_a_bad_candidate_fails_in_the_same_streams() -> None:
    streams = list(_canary_streams((0.02, 0.10), (0.20, 0.10), seed=13))
    assert sum(Verdict.FAIL in v for v in streams) / len(streams) > 0.95
