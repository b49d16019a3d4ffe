"""Anytime-valid one-sided bounds for a Bernoulli rate from running counts (stdlib math only).

For a null rate ``p`` and a rate the data may favour, ``q``, the likelihood ratio of ``S`` successes
in ``n`` trials, ``(q/p)^S ((1-q)/(1-p))^(n-S)``, is a non-negative martingale with mean 1 while
the true rate is ``p`` (a supermartingale while it is on the null side of ``p``). A fixed-weight
mixture of such ratios is one too, so by Ville's inequality it exceeds ``1/alpha`` at *any* time,
however the times are chosen, with probability at most ``alpha``. That is the e-process behind
``lower_bound`` (alternatives ``q = m p`` above ``p``) and ``upper_bound`` (``q = p / m`` below).

Why a discrete mixture over multipliers rather than a conjugate beta prior: it is one-sided (the
whole ``alpha`` is spent on the side we test), it costs ``log(1/weight)`` nats whatever ``n`` is
(a beta mixture costs about ``0.5 log n``), and each term is monotone in ``p``, so the rejected
nulls form an interval and a bound is a plain root search. The multipliers span the ratios that
matter for canaries (5 % up to 10 times better or worse).
"""

from __future__ import annotations

import math
from collections.abc import Callable

# Ratios between the alternative and the null rate, with their mixture weights (summing to 1).
# The coarse ratios decide rare events fast (their cost: log(1/0.14) ~ 2 nats on top of
# log(1/alpha)); the fine ones let a bound keep shrinking like sqrt(log(n)/n) at large counts
# (with only 1.25x as the finest ratio, a 9 % rate over 30,000 requests still had a bound
# 1.2 points wide, 7 standard deviations). Chosen with the bench.
MIXTURE: tuple[tuple[float, float], ...] = (
    (1.05, 0.08),
    (1.1, 0.08),
    (1.25, 0.14),
    (1.5, 0.14),
    (2.0, 0.14),
    (3.0, 0.14),
    (5.0, 0.14),
    (10.0, 0.14),
)
MULTIPLIERS: tuple[float, ...] = tuple(m for m, _ in MIXTURE)
_TERMS = tuple((m, math.log(m), math.log(w)) for m, w in MIXTURE)
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
    for m, log_m, log_w in _TERMS:
        q = m * rate
        if q >= 1.0:
            # An alternative outside [0, 1] is dropped: the remaining weights sum below 1,
            # which keeps the mixture a supermartingale (valid, slightly conservative).
            continue
        terms.append(log_w + successes * log_m + failures * math.log1p(-q) - base)
    if not terms:
        return -math.inf
    return _logsumexp(terms)


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
        log_w - successes * log_m + failures * math.log1p(-rate / m) - base
        for m, log_m, log_w in _TERMS
    ]
    return _logsumexp(terms)


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
    # Per term: its weight is paid once, then it gains its expected log-likelihood ratio (drift)
    # per trial; the fastest term decides. Plugs in the guess: an estimate, not a promise.
    threshold = _threshold(alpha)
    best: float | None = None
    for m, log_m, log_w in _TERMS:
        if m * null_rate >= 1.0:
            continue
        drift = rate_guess * log_m + (1 - rate_guess) * (
            math.log1p(-m * null_rate) - math.log1p(-null_rate)
        )
        if drift > 0:
            n = (threshold - log_w) / drift
            best = n if best is None else min(best, n)
    return None if best is None else math.ceil(best)


def trials_to_reject_below(rate_guess: float, null_rate: float, alpha: float) -> int | None:
    """Trials needed, were the true rate `rate_guess`, for the counts to show it is below `null_rate`."""
    if rate_guess >= null_rate or null_rate <= 0.0:
        return None
    if null_rate >= 1.0:
        return 1
    threshold = _threshold(alpha)
    best: float | None = None
    for m, log_m, log_w in _TERMS:
        drift = -rate_guess * log_m + (1 - rate_guess) * (
            math.log1p(-null_rate / m) - math.log1p(-null_rate)
        )
        if drift > 0:
            n = (threshold - log_w) / drift
            best = n if best is None else min(best, n)
    return None if best is None else math.ceil(best)


# How the two revisions' e-values are combined for one pair of rates: mostly their product (the
# joint evidence), some of the candidate's alone (so an uninformative stable costs ~0.8 nats, not
# everything), a little of the stable's alone (so pairs the stable revision rules out are
# rejected even where the candidate's e-value is 0, e.g. at a null rate of 1). Any fixed convex
# combination of these martingales is one too.
_LOG_W_BOTH, _LOG_W_CAND, _LOG_W_STABLE = math.log(0.5), math.log(0.45), math.log(0.05)


def _combined(log_c: float, log_s: float) -> float:
    """log(0.5 e_c e_s + 0.45 e_c + 0.05 e_s), increasing in both arguments."""
    return _logsumexp([_LOG_W_BOTH + log_c + log_s, _LOG_W_CAND + log_c, _LOG_W_STABLE + log_s])


# Where the search over the stable rate starts (log-spaced), and how far it may refine.
_GRID = (0.0, *(10.0**k for k in (-6, -5, -4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5)), 1.0)
_MAX_POINTS = 400


def rejects_joint(
    candidate: tuple[int, int],
    stable: tuple[int, int],
    null: Callable[[float], float],
    above: bool,
    alpha: float,
) -> tuple[bool, float]:
    """Whether the counts reject "candidate rate vs null(stable rate)" for every stable rate.

    `above=True` tests H0: candidate <= null(stable) (evidence it is higher: FAIL); `above=False`
    tests H0: candidate >= null(stable) (evidence it is lower: PASS). `null` must be
    non-decreasing. For each pair of rates in H0 the e-process combines the candidate's mixture
    e-process at null(stable) with the stable's at the stable rate (`_combined`): the revisions'
    requests are independent, so at the true pair this is a martingale with mean at most 1 and
    Ville's inequality bounds P(ever >= 1/alpha) by alpha. H0 is rejected only when the
    product is >= 1/alpha at *every* stable rate (a rigorous lower bound over a refined grid, the
    terms being monotone in opposite directions). Returns (rejected, lower bound of the log e-value
    over H0, or a value below the threshold that proves it is not rejected).
    """
    (ce, cn), (se, sn) = candidate, stable
    threshold = _threshold(alpha)
    cand_e = log_e_above if above else log_e_below
    stable_e = log_e_below if above else log_e_above

    def parts(p: float) -> tuple[float, float]:
        """(candidate log e-value, stable log e-value) at stable rate p."""
        c = cand_e(ce, cn, null(p))
        # At the ends of [0, 1], -inf is a lower bound of the stable term (e-values are >= 0).
        s = stable_e(se, sn, p) if 0.0 < p < 1.0 else -math.inf
        return c, s

    # With `above`, the candidate term falls and the stable term rises with p; otherwise the
    # reverse. On [a, b] each is at least its value at one end, and the combination is
    # increasing in both: that gives a rigorous lower bound over the interval.
    def lower(pa: tuple[float, float], pb: tuple[float, float]) -> float:
        return _combined(pb[0], pa[1]) if above else _combined(pa[0], pb[1])

    # A quick look at the stable's observed rate settles most non-rejections at once.
    if sn:
        value = _combined(*parts(min(max(se / sn, 1e-9), 1 - 1e-9)))
        if value < threshold:
            return False, value
    points = {p: parts(p) for p in _GRID}
    grid = sorted(points)
    best = math.inf
    stack = [(grid[i], grid[i + 1]) for i in range(len(grid) - 1)]
    while stack:
        a, b = stack.pop()
        bound = lower(points[a], points[b])
        if bound >= threshold:
            best = min(best, bound)
            continue
        if len(points) >= _MAX_POINTS or (a > 0 and b / a < 1.0005) or b - a < 1e-12:
            return False, bound  # cannot certify: not rejected (the safe answer)
        mid = math.sqrt(a * b) if a > 0 else b / 10.0
        points[mid] = parts(mid)
        value = _combined(*points[mid])
        if value < threshold:
            return False, value
        stack.extend([(a, mid), (mid, b)])
    return True, best
