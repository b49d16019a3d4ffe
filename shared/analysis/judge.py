"""The sequential judge: is the candidate worse than the stable revision, with what confidence.

Pure: counts in, a verdict out; no I/O, no clock. The shift step calls `evaluate` at every wake-up
with the cumulative counts per revision since the canary window started, persists the returned
`JudgeState` (a small dict) on the rollout and acts on the `Judgement` through `policy.decide`.

Method. Each metric (error rate, slow share) is a Bernoulli rate per revision, ``c`` for the
candidate and ``s`` for stable. With ``allowed(s) = max(max_ratio * s, s + max_increase)`` and the
guard rail ``max_rate``, the boundary is ``null(s) = min(max_rate, allowed(s))`` (monotone in s).

- FAIL claims ``c > null(s)``: worse than allowed, or above the guard rail.
- PASS claims ``c < null(s)``: not worse than allowed, and below the guard rail.

Each claim is an e-process test of a composite null over the pair (c, s) (`sequential.rejects_joint`):
for every pair in the null, the candidate's mixture-of-likelihood-ratios e-process at ``null(s)``
combined with the stable revision's e-process at ``s`` (mostly their product; see
`sequential._combined`). The revisions' requests are independent, so at the true pair the product is a
martingale (Ville's inequality: it ever reaches 1/alpha with probability at most alpha, however
the evaluation times and the traffic split are chosen); the claim is made only if the product
reaches 1/alpha at every pair of the null. This is the mixture-SPRT idea of Lindon et al. (KDD
2022) with one-sided mixtures per revision, and it lets a clear stable rate and a clear
candidate rate share one evidence budget. Without stable traffic only the candidate counts, so
the guard rail fails a broken candidate after a handful of requests and the absolute allowance
``max_increase`` is all a PASS can lean on.

The verdict is FAIL if any metric fails, PASS if every metric passes and the candidate served at
least ``min_requests``, CONTINUE otherwise: no traffic is never PASS.

Error budget, alpha = 1 - confidence:
- false FAIL (a good candidate rolled back) needs one of the two metrics' FAIL tests to err:
  each runs at alpha/2 (union bound), so P(any false FAIL, ever) <= alpha.
- false PASS (a bad candidate promoted) needs the PASS test of a metric that is actually bad to
  err (every metric must pass), so each runs at alpha and P(false PASS, ever) <= alpha.
Both hold simultaneously over all evaluations, so at whatever moment the rollout stops. Evidence
pools over the whole canary (one test, not one per step), whatever the split (10 -> 50 -> 100 %).

Measured alternatives (bench/judge_bench.py): comparing separate per-revision confidence bounds
(candidate lower > allowed(stable upper), alpha/4 each) needed ~1.5-2x the traffic; a generalised
likelihood ratio with Jeffreys mixtures was no faster than that. A test of the candidate's share
of errors given exposure cannot use the 100 % step (stable gets nothing) nor express the
absolute allowance (0.0 % vs 0.05 % is not a regression).

Assumption: each revision's rate is steady over the canary window (requests are exchangeable).
A stable revision that degrades during the canary makes the comparison lenient, never the guard
rail. The counts arrive cumulative; the state turns them into increments and pools them, so that
a counter reset (a restarted pod, a new Prometheus) or a redelivered evaluation never counts
evidence twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.analysis import sequential
from shared.analysis.counts import ArmCounts
from shared.analysis.criteria import Criteria, RateLimits, SlowLimits

# Pseudo-requests at the stable rate that a young candidate's rate is shrunk towards when
# estimating how much more traffic is needed (its own counts dominate after a few dozen).
_PRIOR_REQUESTS = 10.0
_METRICS = 2  # the false-FAIL budget is split over this many metrics


class Verdict(StrEnum):
    """What the evidence says so far."""

    PASS = "pass"  # not worse than allowed, with the configured confidence
    FAIL = "fail"  # worse than allowed (or above a guard rail), with the configured confidence
    CONTINUE = "continue"  # not enough evidence either way yet


@dataclass(frozen=True)
class JudgeState:
    """What the judge remembers between evaluations (JSON-able via as_dict / from_dict)."""

    candidate: ArmCounts = field(default_factory=ArmCounts)  # pooled over the canary window
    stable: ArmCounts = field(default_factory=ArmCounts)
    seen_candidate: ArmCounts = field(default_factory=ArmCounts)  # last cumulative counts received
    seen_stable: ArmCounts = field(default_factory=ArmCounts)
    step: int = -1  # the traffic step of the last observation
    step_start: ArmCounts = field(
        default_factory=ArmCounts
    )  # pooled candidate counts when it began
    evaluations: int = 0
    stable_grows: bool = True  # the last observation brought stable traffic (not a 100 % step)

    def observe(self, candidate: ArmCounts, stable: ArmCounts, step: int) -> JudgeState:
        """Fold in the cumulative counts of one evaluation, taken while `step` was serving."""
        added_candidate = _increment(candidate, self.seen_candidate)
        added_stable = _increment(stable, self.seen_stable)
        new_candidate = self.candidate.plus(added_candidate)
        new_stable = self.stable.plus(added_stable)
        # Only a window with candidate traffic says whether stable still gets any.
        grows = bool(added_stable.requests) if added_candidate.requests else self.stable_grows
        # Requests before this observation belong to the previous step: the step boundary is
        # the first evaluation that sees the new step.
        step_start = self.candidate if step != self.step else self.step_start
        return JudgeState(
            new_candidate,
            new_stable,
            candidate,
            stable,
            step,
            step_start,
            self.evaluations + 1,
            grows,
        )

    @property
    def step_candidate(self) -> ArmCounts:
        """Candidate counts served since the current step began."""
        return self.candidate.since(self.step_start)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict to persist on the rollout document."""
        return {
            "candidate": self.candidate.as_dict(),
            "stable": self.stable.as_dict(),
            "seen_candidate": self.seen_candidate.as_dict(),
            "seen_stable": self.seen_stable.as_dict(),
            "step": self.step,
            "step_start": self.step_start.as_dict(),
            "evaluations": self.evaluations,
            "stable_grows": self.stable_grows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JudgeState:
        """Inverse of as_dict; None or {} is the state before the first evaluation."""
        data = data or {}
        return cls(
            ArmCounts.from_dict(data.get("candidate")),
            ArmCounts.from_dict(data.get("stable")),
            ArmCounts.from_dict(data.get("seen_candidate")),
            ArmCounts.from_dict(data.get("seen_stable")),
            int(data.get("step", -1)),
            ArmCounts.from_dict(data.get("step_start")),
            int(data.get("evaluations", 0)),
            bool(data.get("stable_grows", True)),
        )


def _increment(now: ArmCounts, seen: ArmCounts) -> ArmCounts:
    """What the cumulative counts added since last seen (a decrease adds nothing)."""
    # A decrease is a counter reset or PromQL's extrapolating increase() dipping: the two cannot
    # be told apart, and treating a dip as a reset would count evidence twice (invalid bounds),
    # while clamping only loses the one window after a real reset (less power, still valid).
    return now.since(seen)


@dataclass(frozen=True)
class MetricJudgement:
    """One metric's verdict with the figures behind it."""

    name: str  # "error rate" or "slow share"
    verdict: Verdict
    guard_rail: bool  # FAIL only because the candidate is above max_rate (stable could not tell)
    candidate_events: int
    candidate_requests: int
    stable_events: int
    stable_requests: int
    limits: RateLimits
    fail_alpha: float
    pass_alpha: float
    allowed: float  # the limit at the observed stable rate (capped by max_rate), for humans
    # The statistics: the smallest log e-value over the null (FAIL at log(1/fail_alpha), PASS at
    # log(1/pass_alpha)), or, when short of that, one value below the level that shows it.
    log_e_fail: float  # against "not worse than allowed"
    log_e_pass: float  # against "worse than allowed"
    needed_requests: int | None  # more candidate requests this metric needs (None: cannot tell)

    @property
    def candidate_rate(self) -> float:
        """Observed candidate rate (0 without traffic)."""
        return self.candidate_events / self.candidate_requests if self.candidate_requests else 0.0

    @property
    def stable_rate(self) -> float:
        """Observed stable rate (0 without traffic)."""
        return self.stable_events / self.stable_requests if self.stable_requests else 0.0

    def bounds(self) -> dict[str, float]:
        """Each revision's own anytime-valid bounds at the metric's levels (for the log only)."""
        # The verdict combines both revisions' evidence (sequential.rejects_joint), which is
        # sharper than comparing these separate bounds; they show where each rate stands.
        c, s = (
            (self.candidate_events, self.candidate_requests),
            (self.stable_events, self.stable_requests),
        )
        return {
            "candidate_lower": sequential.lower_bound(*c, self.fail_alpha),
            "candidate_upper": sequential.upper_bound(*c, self.pass_alpha),
            "stable_lower": sequential.lower_bound(*s, self.pass_alpha),
            "stable_upper": sequential.upper_bound(*s, self.fail_alpha),
        }

    def values(self) -> dict[str, Any]:
        """Raw counts, rates, the statistics and their bounds, for the decision log."""
        return {
            "verdict": str(self.verdict),
            "guard_rail": self.guard_rail,
            "candidate": {"events": self.candidate_events, "requests": self.candidate_requests},
            "stable": {"events": self.stable_events, "requests": self.stable_requests},
            "candidate_rate": self.candidate_rate,
            "stable_rate": self.stable_rate,
            "allowed": self.allowed,
            "log_e_fail": _finite(self.log_e_fail),
            "log_e_pass": _finite(self.log_e_pass),
            **self.bounds(),
            "needed_requests": self.needed_requests,
        }

    def thresholds(self) -> dict[str, Any]:
        """The limits and the evidence levels this metric was held to."""
        return {
            "max_ratio": self.limits.max_ratio,
            "max_increase": self.limits.max_increase,
            "max_rate": self.limits.max_rate,
            "fail_alpha": self.fail_alpha,
            "pass_alpha": self.pass_alpha,
            "log_e_to_fail": math.log(1 / self.fail_alpha),
            "log_e_to_pass": math.log(1 / self.pass_alpha),
        }

    def summary(self) -> str:
        """`error rate 24.8% (31/125) vs stable 0.0% (0/1,130)`; the slow share names its threshold."""
        name = self.name
        if isinstance(self.limits, SlowLimits):
            name += f" (>{self.limits.latency_threshold_ms:g} ms)"
        text = f"{name} {_pct(self.candidate_rate)} ({self.candidate_events:,}/{self.candidate_requests:,})"
        if self.stable_requests:
            text += f" vs stable {_pct(self.stable_rate)} ({self.stable_events:,}/{self.stable_requests:,})"
        else:
            text += " (no stable traffic)"
        return text


@dataclass(frozen=True)
class Judgement:
    """The judge's answer at one evaluation."""

    verdict: Verdict
    reason: str  # one line for humans
    metrics: tuple[MetricJudgement, ...]
    candidate_requests: int
    needed_requests: int | None  # more candidate requests to decide (0 once decided, None: unknown)
    confidence: float
    min_requests: int

    def values(self) -> dict[str, Any]:
        """Per-metric measured figures and statistics (JSON-able) for the decision log."""
        return {
            "verdict": str(self.verdict),
            "candidate_requests": self.candidate_requests,
            "needed_requests": self.needed_requests,
            **{_key(m.name): m.values() for m in self.metrics},
        }

    def thresholds(self) -> dict[str, Any]:
        """Per-metric limits and the confidence (JSON-able) for the decision log."""
        return {
            "confidence": self.confidence,
            "min_requests": self.min_requests,
            **{_key(m.name): m.thresholds() for m in self.metrics},
        }


def _key(name: str) -> str:
    """`error rate` -> `error_rate`."""
    return name.replace(" ", "_")


def _finite(x: float) -> float | None:
    """JSON has no infinities."""
    return x if math.isfinite(x) else None


def _pct(rate: float) -> str:
    """24.8%, 0.0%, and two decimals for small non-zero rates (0.05%)."""
    if 0 < rate < 0.01:
        return f"{100 * rate:.2f}%"
    return f"{100 * rate:.1f}%"


@dataclass(frozen=True)
class _Levels:
    """One metric's limits and evidence levels: what its FAIL and PASS tests compare against."""

    limits: RateLimits
    fail_alpha: float
    pass_alpha: float
    min_requests: int

    def null(self, stable_rate: float) -> float:
        """The boundary between allowed and worse, for a given stable rate (guard rail included)."""
        return min(self.limits.max_rate, self.limits.allowed(stable_rate))

    def fail_test(self, ce: int, cn: int, se: int, sn: int) -> tuple[bool, float]:
        """(FAIL?, statistic): shown worse than allowed, or above the guard rail."""
        return sequential.rejects_joint((ce, cn), (se, sn), self.null, True, self.fail_alpha)

    def pass_test(self, ce: int, cn: int, se: int, sn: int) -> tuple[bool, float]:
        """(PASS?, statistic): shown not worse than allowed and below the guard rail."""
        passes, stat = sequential.rejects_joint(
            (ce, cn), (se, sn), self.null, False, self.pass_alpha
        )
        return passes and cn >= self.min_requests, stat

    def decides(self, ce: int, cn: int, se: int, sn: int) -> bool:
        """Whether these counts would FAIL or PASS."""
        return self.fail_test(ce, cn, se, sn)[0] or self.pass_test(ce, cn, se, sn)[0]


def _needed(
    candidate: tuple[int, int], stable: tuple[int, int], levels: _Levels, stable_grows: bool
) -> int | None:
    """More candidate requests this metric needs to decide, were the observed rates to persist."""
    (ce, cn), (se, sn) = candidate, stable
    stable_guess = (se + 0.5) / (sn + 1.0)
    guess = (ce + _PRIOR_REQUESTS * stable_guess) / (cn + _PRIOR_REQUESTS)
    # Project the counts forward: the candidate grows by `more`, stable in proportion while it
    # still gets traffic (frozen at a 100 % step, where the comparison rests on what it saw).
    ratio = (sn / cn if cn else 1.0) if stable_grows else 0.0
    base = max(cn, levels.min_requests, 10)
    for i in range(1, 60):
        more = max(math.ceil(base * (1.25**i - 1)), levels.min_requests - cn)
        n_c, n_s = cn + more, sn + round(more * ratio)
        s_s = round(stable_guess * n_s) if n_s > sn else se
        if levels.decides(round(guess * n_c), n_c, s_s, n_s):
            return more
    return None  # the rates are too close to the limit for any reachable amount of traffic


def _judge_metric(
    name: str,
    candidate: tuple[int, int],
    stable: tuple[int, int],
    levels: _Levels,
    estimate: bool,
    stable_grows: bool,
) -> MetricJudgement:
    """One metric: FAIL, PASS or CONTINUE with its statistics."""
    (ce, cn), (se, sn) = candidate, stable
    limits = levels.limits
    fails, log_e_fail = levels.fail_test(ce, cn, se, sn)
    passes, log_e_pass = (False, -math.inf) if fails else levels.pass_test(ce, cn, se, sn)
    # Name the guard rail only when the comparison with stable alone would not have failed.
    guard = fails and (
        not sn
        or not sequential.rejects_joint(
            candidate, stable, lambda p: min(1.0, limits.allowed(p)), True, levels.fail_alpha
        )[0]
    )
    verdict = Verdict.FAIL if fails else Verdict.PASS if passes else Verdict.CONTINUE
    needed: int | None = 0
    if verdict is Verdict.CONTINUE:
        needed = _needed(candidate, stable, levels, stable_grows) if estimate else None
    allowed = levels.null(se / sn) if sn else limits.max_rate
    return MetricJudgement(
        name, verdict, guard, ce, cn, se, sn, limits, levels.fail_alpha, levels.pass_alpha,
        allowed, log_e_fail, log_e_pass, needed,
    )  # fmt: skip


def judge(state: JudgeState, criteria: Criteria, *, estimate: bool = True) -> Judgement:
    """The verdict on everything observed so far (pooled over all steps of the canary)."""
    # `estimate=False` skips the (costlier) projection of needed requests: for simulations.
    alpha = criteria.alpha
    # A false FAIL needs one metric's FAIL test to err (union over metrics); a false PASS needs
    # the bad metric's PASS test to err (every metric must pass): see the module docstring.
    fail_alpha, pass_alpha = alpha / _METRICS, alpha
    c, s = state.candidate, state.stable
    levels = [
        _Levels(limits, fail_alpha, pass_alpha, criteria.min_requests)
        for limits in (criteria.errors, criteria.slow)
    ]
    metrics = (
        _judge_metric("error rate", (c.errors, c.requests), (s.errors, s.requests), levels[0],
                      estimate, state.stable_grows),
        _judge_metric("slow share", (c.slow, c.requests), (s.slow, s.requests), levels[1],
                      estimate, state.stable_grows),
    )  # fmt: skip
    confidence = f"{100 * criteria.confidence:g}% confidence"
    failed = [m for m in metrics if m.verdict is Verdict.FAIL]
    if failed:
        m = failed[0]
        if m.guard_rail:
            why = f"above the {_pct(m.limits.max_rate)} guard rail with {confidence}"
        else:
            why = f"worse than allowed with {confidence}"
        reason = f"{m.summary()}: {why}"
        return Judgement(
            Verdict.FAIL, reason, metrics, c.requests, 0, criteria.confidence, criteria.min_requests
        )
    if all(m.verdict is Verdict.PASS for m in metrics):
        reason = (
            "; ".join(m.summary() for m in metrics) + f": not worse than allowed with {confidence}"
        )
        return Judgement(
            Verdict.PASS, reason, metrics, c.requests, 0, criteria.confidence, criteria.min_requests
        )
    open_metrics = [m for m in metrics if m.verdict is Verdict.CONTINUE]
    needs = [m.needed_requests for m in open_metrics]
    needed = None if any(n is None for n in needs) else max(n for n in needs if n is not None)
    if not c.requests:
        needed = max(needed or 0, criteria.min_requests)
        reason = "no candidate traffic yet"
    else:
        reason = "not enough evidence yet: " + "; ".join(m.summary() for m in open_metrics)
    if needed is None:
        if estimate:
            reason += "; too close to the limit to estimate how much more traffic is needed"
    else:
        reason += f"; about {needed:,} more candidate requests needed"
    return Judgement(
        Verdict.CONTINUE,
        reason,
        metrics,
        c.requests,
        needed,
        criteria.confidence,
        criteria.min_requests,
    )


def evaluate(
    state: JudgeState | None,
    candidate: ArmCounts,
    stable: ArmCounts,
    step: int,
    criteria: Criteria,
    *,
    estimate: bool = True,
) -> tuple[JudgeState, Judgement]:
    """Fold in one evaluation's cumulative counts and judge: the shift step's single entry point."""
    new_state = (state or JudgeState()).observe(candidate, stable, step)
    return new_state, judge(new_state, criteria, estimate=estimate)
