"""Anytime-valid one-sided bounds for a Bernoulli rate from running counts (stdlib math only).

For a null rate ``p`` and a rate the data may favour, ``q``, the likelihood ratio of ``S`` successes
in ``n`` trials, ``(q/p)^S ((1-q)/(1-p))^(n-S)``, is a non-negative martingale with mean 1 while
the true rate is ``p`` (a supermartingale while it is on the null side of ``p``). A fixed-weight
mixture of such ratios is one too, so by Ville's inequality it exceeds ``1/alpha`` at *any* time,
however the times are chosen, with probability at most ``alpha``. That is the e-process behind
``lower_bound`` (alternatives ``q = m p`` above ``p``) and ``upper_bound`` (``q = p / m`` below).

Why a discrete mixture over multipliers rather than a conjugate beta prior: it is one-sided (the
whole ``alpha`` is spent on the side we test), it costs ``log(len(MULTIPLIERS))`` nats whatever
``n`` is (a beta mixture costs about ``0.5 log n``), and each term is monotone in ``p``, so the
rejected nulls form an interval and a bound is a plain root search. The multipliers span the
ratios that matter for canaries (25 % up to 10 times better or worse).
"""

from __future__ import annotations

import math

# Ratios between the alternative and the null rate mixed with equal weights; the cost of the
# mixture is log(6) ~ 1.8 nats on top of log(1/alpha). Chosen with the bench: wider grids (up to
# 1000x) or coarser ones (1.5x steps) decided the bench's cases 5-15 % later.
MULTIPLIERS: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
_LOG_WEIGHT = -math.log(len(MULTIPLIERS))
_LOG_MULTIPLIERS = tuple(math.log(m) for m in MULTIPLIERS)
# Bounds are found to this relative precision (in p); the decision itself never depends on it.
_TOLERANCE = 1e-4
_FLOOR = 1e-9


def _logsumexp(values: list[float]) -> float:
    """log(sum(exp(v))) without overflow."""
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def log_e_above(successes: int, trials: int, rate: float) -> float:
    """Log e-value against "the true rate is at most `rate`" (large: the rate is higher)."""
    if trials == 0 or rate >= 1.0:
        return 0.0 if trials == 0 else -math.inf
    rate = max(rate, _FLOOR)
    failures = trials - successes
    base = failures * math.log1p(-rate)
    terms = []
    for m, log_m in zip(MULTIPLIERS, _LOG_MULTIPLIERS, strict=True):
        q = m * rate
        if q >= 1.0:
            # An alternative outside [0, 1] is dropped: the remaining weights sum below 1,
            # which keeps the mixture a supermartingale (valid, slightly conservative).
            continue
        terms.append(successes * log_m + failures * math.log1p(-q) - base)
    if not terms:
        return -math.inf
    return _LOG_WEIGHT + _logsumexp(terms)


def log_e_below(successes: int, trials: int, rate: float) -> float:
    """Log e-value against "the true rate is at least `rate`" (large: the rate is lower)."""
    if trials == 0:
        return 0.0
    if rate <= 0.0:
        return -math.inf
    if rate >= 1.0:
        # A rate of 1 is refuted by a single non-success.
        return math.inf if successes < trials else 0.0
    failures = trials - successes
    base = failures * math.log1p(-rate)
    terms = [
        -successes * log_m + failures * math.log1p(-rate / m) - base
        for m, log_m in zip(MULTIPLIERS, _LOG_MULTIPLIERS, strict=True)
    ]
    return _LOG_WEIGHT + _logsumexp(terms)


def _threshold(alpha: float) -> float:
    """The log e-value at which a null is rejected at level alpha (Ville's inequality)."""
    return math.log(1.0 / alpha)


def rejects_above(successes: int, trials: int, rate: float, alpha: float) -> bool:
    """Whether the running counts show, at level alpha, that the true rate exceeds `rate`."""
    return log_e_above(successes, trials, rate) >= _threshold(alpha)


def rejects_below(successes: int, trials: int, rate: float, alpha: float) -> bool:
    """Whether the running counts show, at level alpha, that the true rate is below `rate`."""
    return log_e_below(successes, trials, rate) >= _threshold(alpha)


def lower_bound(successes: int, trials: int, alpha: float) -> float:
    """Anytime-valid lower confidence bound: every rate below it is rejected at level alpha."""
    if successes == 0 or trials == 0:
        return 0.0
    threshold = _threshold(alpha)
    # log_e_above falls as the null rate rises, so the rejected nulls are [0, bound).
    if log_e_above(successes, trials, _FLOOR) < threshold:
        return 0.0
    lo, hi = _FLOOR, successes / trials
    if log_e_above(successes, trials, hi) >= threshold:
        return hi  # cannot happen (no alternative beats the MLE), kept for safety
    while hi - lo > _TOLERANCE * hi:
        mid = math.sqrt(lo * hi)  # geometric: rates span orders of magnitude
        if log_e_above(successes, trials, mid) >= threshold:
            lo = mid
        else:
            hi = mid
    return lo  # rounded down: the reported bound stays a valid lower bound


def upper_bound(successes: int, trials: int, alpha: float) -> float:
    """Anytime-valid upper confidence bound: every rate above it is rejected at level alpha."""
    if trials == 0:
        return 1.0
    threshold = _threshold(alpha)
    # log_e_below rises with the null rate, so the rejected nulls are (bound, 1].
    lo = max(successes / trials, _FLOOR)
    hi = 1.0 - 1e-12
    if log_e_below(successes, trials, hi) < threshold:
        return 1.0
    while hi - lo > _TOLERANCE * hi:
        mid = math.sqrt(lo * hi)
        if log_e_below(successes, trials, mid) >= threshold:
            hi = mid
        else:
            lo = mid
    return hi  # rounded up: the reported bound stays a valid upper bound


def trials_to_reject_above(rate_guess: float, null_rate: float, alpha: float) -> int | None:
    """Trials needed, were the true rate `rate_guess`, for the counts to show it exceeds `null_rate`."""
    if rate_guess <= null_rate or null_rate >= 1.0:
        return None
    null_rate = max(null_rate, _FLOOR)
    # Expected log e-value per trial of the best mixture term (its drift); the mixture weight
    # is paid once. Plugs in the guess, so it is an estimate, not a promise.
    best = max(
        (
            rate_guess * log_m
            + (1 - rate_guess) * (math.log1p(-m * null_rate) - math.log1p(-null_rate))
            for m, log_m in zip(MULTIPLIERS, _LOG_MULTIPLIERS, strict=True)
            if m * null_rate < 1.0
        ),
        default=0.0,
    )
    if best <= 0:
        return None
    return math.ceil((_threshold(alpha) - _LOG_WEIGHT) / best)


def trials_to_reject_below(rate_guess: float, null_rate: float, alpha: float) -> int | None:
    """Trials needed, were the true rate `rate_guess`, for the counts to show it is below `null_rate`."""
    if rate_guess >= null_rate or null_rate <= 0.0:
        return None
    if null_rate >= 1.0:
        return 1
    best = max(
        rate_guess * -log_m
        + (1 - rate_guess) * (math.log1p(-null_rate / m) - math.log1p(-null_rate))
        for m, log_m in zip(MULTIPLIERS, _LOG_MULTIPLIERS, strict=True)
    )
    if best <= 0:
        return None
    return math.ceil((_threshold(alpha) - _LOG_WEIGHT) / best)
