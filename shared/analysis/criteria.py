"""What the judge holds a candidate to: plain frozen dataclasses with defaults a user can rely on.

Defaults (each chosen with `bench/judge_bench.py`, which prints the figures):

- error rate (5xx share): the candidate may be up to 2x the stable rate, or up to 0.3 percentage
  points above it, whichever allows more (so 0.0 % vs 0.05 % is not a regression, 0.1 % vs 1 % is);
  an error rate of 5 % or more fails at once whatever the stable revision does (guard rail).
- slow share (requests slower than `latency_threshold_ms`, 500 ms): up to 1.5x the stable share
  or 2 points above it; 50 % slow fails at once. Set the threshold near the stable revision's p90
  latency: a share around 10 % moves visibly when latency grows (+30 % latency doubles it), a
  share far in the tail (p99) needs ten times the traffic to say the same thing.
- The margins trade speed against strictness, and both directions cost traffic. Bench (steps
  10/50/100 %, 60 s bake, 0.1 % stable errors): with 0.3 points a 1 % candidate fails in ~90 s at
  100 req/s and a good one passes with ~3,000 candidate requests; with 0.2 points the good one
  needs ~30 % more; with 0.5 points it needs ~25 % fewer, but the 1 % candidate takes ~160 s.
- at least 50 candidate requests in every step before it may advance.
- 95 % confidence: a good candidate is rolled back, or a bad one promoted, at most 5 % of the
  time, however long the rollout watches (the judge's bounds are anytime-valid).

A separate spec section (pydantic) converts the user's YAML into these.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RateLimits:
    """How much worse than stable a candidate's rate may be (the larger allowance wins)."""

    max_ratio: float = 2.0  # candidate <= max_ratio x stable
    max_increase: float = 0.003  # candidate <= stable + max_increase (absolute, 0.003 = 0.3 pp)
    max_rate: float = 0.05  # guard rail: at or above this share the candidate fails, stable or not

    def __post_init__(self) -> None:
        if self.max_ratio < 1.0:
            raise ValueError(f"max_ratio must be at least 1 (got {self.max_ratio})")
        if not 0.0 <= self.max_increase < 1.0:
            raise ValueError(f"max_increase must be in [0, 1) (got {self.max_increase})")
        if not 0.0 < self.max_rate <= 1.0:
            raise ValueError(f"max_rate must be in (0, 1] (got {self.max_rate})")

    def allowed(self, stable_rate: float) -> float:
        """The highest candidate rate that is not worse than allowed, given the stable rate."""
        # Monotone in the stable rate: a bound on stable gives a bound on what is allowed.
        return min(1.0, max(self.max_ratio * stable_rate, stable_rate + self.max_increase))


@dataclass(frozen=True)
class SlowLimits(RateLimits):
    """Limits on the share of requests slower than the latency threshold."""

    max_ratio: float = 1.5
    max_increase: float = 0.02
    max_rate: float = 0.5
    latency_threshold_ms: float = 500.0  # a request slower than this counts as slow

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latency_threshold_ms <= 0:
            raise ValueError(
                f"latency_threshold_ms must be positive (got {self.latency_threshold_ms})"
            )


@dataclass(frozen=True)
class Criteria:
    """Everything the judge and the step policy need from the service's analysis spec."""

    errors: RateLimits = field(default_factory=RateLimits)
    slow: SlowLimits = field(default_factory=SlowLimits)
    min_requests: int = 50  # candidate requests a step must see before it may advance
    confidence: float = 0.95  # 1 - alpha for both a false rollback and a false promotion

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1) (got {self.confidence})")
        if self.min_requests < 1:
            raise ValueError(f"min_requests must be at least 1 (got {self.min_requests})")

    @property
    def alpha(self) -> float:
        """The error budget: 1 - confidence."""
        return 1.0 - self.confidence
