"""The anytime-valid bounds: sane values, monotone, and error rates that hold at any stopping time."""

from __future__ import annotations

import random

import pytest

from shared.analysis import sequential


def test_bounds_bracket_the_observed_rate() -> None:
    for s, n in [(0, 10), (1, 100), (31, 125), (500, 1000), (100, 100)]:
        lo = sequential.lower_bound(s, n, 0.05)
        hi = sequential.upper_bound(s, n, 0.05)
        assert 0.0 <= lo <= s / n <= hi <= 1.0


def test_no_trials_says_nothing() -> None:
    assert sequential.lower_bound(0, 0, 0.05) == 0.0
    assert sequential.upper_bound(0, 0, 0.05) == 1.0
    assert sequential.log_e_above(0, 0, 0.1) == 0.0
    assert sequential.log_e_below(0, 0, 0.1) == 0.0


def test_bounds_tighten_with_more_evidence() -> None:
    widths = [
        sequential.upper_bound(n // 100, n, 0.05) - sequential.lower_bound(n // 100, n, 0.05)
        for n in (100, 1_000, 10_000, 100_000)
    ]
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < 0.003


def test_lower_confidence_means_wider_bounds() -> None:
    assert sequential.upper_bound(3, 1000, 0.01) > sequential.upper_bound(3, 1000, 0.1)
    assert sequential.lower_bound(30, 1000, 0.01) < sequential.lower_bound(30, 1000, 0.1)


def test_rejection_agrees_with_the_bounds() -> None:
    s, n, alpha = 31, 125, 0.0125
    lo, hi = sequential.lower_bound(s, n, alpha), sequential.upper_bound(s, n, alpha)
    assert sequential.rejects_above(s, n, lo * 0.99, alpha)
    assert not sequential.rejects_above(s, n, lo * 1.01, alpha)
    assert sequential.rejects_below(s, n, hi * 1.01, alpha)
    assert not sequential.rejects_below(s, n, hi * 0.99, alpha)


def test_trials_estimate_is_in_the_right_range() -> None:
    n = sequential.trials_to_reject_above(0.2, 0.05, 0.0125)
    assert n is not None and 20 <= n <= 80
    assert sequential.trials_to_reject_above(0.01, 0.02, 0.05) is None  # on the null side
    m = sequential.trials_to_reject_below(0.001, 0.005, 0.025)
    assert m is not None and 500 <= m <= 5_000


@pytest.mark.parametrize(("rate", "seed"), [(0.01, 1), (0.2, 2)])
def test_false_rejection_at_any_stopping_time_is_at_most_alpha(rate: float, seed: int) -> None:
    # 500 seeded streams, checked after every batch of 10 trials up to 2,000 trials: a stream
    # counts once if the bound *ever* excludes the true rate, i.e. stopping at the worst moment.
    rng = random.Random(seed)
    alpha, streams = 0.05, 500
    ever_above = ever_below = 0
    for _ in range(streams):
        s = n = 0
        above = below = False
        for _ in range(200):
            s += sum(rng.random() < rate for _ in range(10))
            n += 10
            above = above or sequential.rejects_above(s, n, rate, alpha)
            below = below or sequential.rejects_below(s, n, rate, alpha)
            if above and below:
                break
        ever_above += above
        ever_below += below
    # alpha plus three binomial standard deviations: cannot flake with a fixed seed, and a
    # broken bound (e.g. a fixed-horizon interval checked 200 times) fails it by far.
    margin = 3 * (alpha * (1 - alpha) / streams) ** 0.5
    assert ever_above / streams <= alpha + margin
    assert ever_below / streams <= alpha + margin


def test_a_fixed_horizon_bound_would_fail_the_same_check() -> None:
    # The check above has teeth: a normal-approximation 95 % interval, looked at every 10
    # trials, excludes the true rate far more often than 5 %.
    rng = random.Random(3)
    rate, streams, misses = 0.2, 300, 0
    for _ in range(streams):
        s = n = 0
        for _ in range(200):
            s += sum(rng.random() < rate for _ in range(10))
            n += 10
            p = s / n
            if abs(p - rate) > 1.96 * (p * (1 - p) / n) ** 0.5:
                misses += 1
                break
    assert misses / streams > 0.2


def test_joint_test_without_stable_traffic_is_the_candidate_alone() -> None:
    # No stable requests: only the candidate's evidence counts (a guard rail at the cap).
    def null(_: float) -> float:
        return 0.05

    # The candidate's share of the combination (0.45) is the price of an uninformative stable.
    for s, n in [(3, 3), (4, 4), (10, 40), (2, 100), (40, 400)]:
        joint, _ = sequential.rejects_joint((s, n), (0, 0), null, True, 0.025)
        assert sequential.rejects_above(s, n, 0.05, 0.025) or not joint
        assert joint or not sequential.rejects_above(s, n, 0.05, 0.025 * 0.45)
    assert sequential.rejects_joint((4, 4), (0, 0), null, True, 0.025)[0]  # four errors in a row


def test_joint_test_uses_both_revisions() -> None:
    # Candidate 1 % over 3,000, stable 0.1 % over 8,000, limit 2x or +0.3 points: neither
    # revision's separate bound settles it at these levels, the joint evidence does.
    def null(p: float) -> float:
        return min(0.05, max(2 * p, p + 0.003))

    lower_c = sequential.lower_bound(30, 3000, 0.0125)
    upper_s = sequential.upper_bound(8, 8000, 0.0125)
    assert lower_c <= null(upper_s)
    assert sequential.rejects_joint((30, 3000), (8, 8000), null, True, 0.025)[0]
    # ... and it does not claim what the counts cannot show.
    assert not sequential.rejects_joint((9, 3000), (8, 8000), null, True, 0.025)[0]
