"""The `analysis:` section of a service spec: how the candidate is judged while it takes traffic.

Every field has a default a user can rely on without writing any of it:

```yaml
analysis:
  interval_seconds: 5         # how often the judge re-evaluates a baking step
  confidence: 0.95            # of every PASS and FAIL the judge gives
  min_requests: 50            # candidate requests a step must see before it may pass
  max_wait_seconds: 900       # evidence deadline per step, from the moment its weight was set
  on_thin_evidence: wait      # at bake end with too little evidence: wait | top_up | fail
  top_up_requests: 20         # with top_up: requests sent to the candidate per evaluation
  error_rate:                 # 5xx share of the candidate's requests
    max_rate: 0.05            #   guard rail: clearly above this fails at once
    max_increase: 0.003       #   allowed increase over stable (0.3 percentage points) ...
    max_ratio: 2.0            #   ... or allowed multiple of stable's rate
  latency:                    # share of requests slower than threshold_ms
    threshold_ms: 500         #   an Istio histogram bucket bound
    max_rate: 0.5
    max_increase: 0.02
    max_ratio: 1.5
```

The defaults are those of `shared/analysis/criteria.py`, chosen with `bench/judge_bench.py`. Set the
latency threshold near the stable revision's p90: a share around 10 % moves visibly when latency
grows, a share far in the tail needs ten times the traffic to say the same thing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.analysis.criteria import Criteria, SlowLimits
from shared.analysis.criteria import RateLimits as RateLimitsCriteria

# Istio's default bucket bounds for istio_request_duration_milliseconds: a latency threshold must be
# one of them, because slow requests are counted from the histogram's cumulative buckets.
ISTIO_DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip


class RateLimits(BaseModel):
    """How much worse than stable a rate may be: (ratio OR increase) allowed; above max_rate fails."""

    model_config = ConfigDict(extra="forbid")

    max_rate: float = Field(gt=0, le=1)
    max_increase: float = Field(ge=0, lt=1)
    max_ratio: float = Field(ge=1, le=1000)


class ErrorRateLimits(RateLimits):
    """Limits on the candidate's error rate (5xx share)."""

    max_rate: float = Field(default=0.05, gt=0, le=1)
    max_increase: float = Field(default=0.003, ge=0, lt=1)
    max_ratio: float = Field(default=2.0, ge=1, le=1000)

    def limits(self) -> RateLimitsCriteria:
        """The judge's form of these limits."""
        return RateLimitsCriteria(self.max_ratio, self.max_increase, self.max_rate)


class LatencyLimits(RateLimits):
    """Limits on the candidate's share of requests slower than `threshold_ms`."""

    threshold_ms: float = Field(default=500.0, gt=0)
    max_rate: float = Field(default=0.5, gt=0, le=1)
    max_increase: float = Field(default=0.02, ge=0, lt=1)
    max_ratio: float = Field(default=1.5, ge=1, le=1000)

    def limits(self) -> SlowLimits:
        """The judge's form of these limits."""
        return SlowLimits(self.max_ratio, self.max_increase, self.max_rate, self.threshold_ms)

    @field_validator("threshold_ms")
    @classmethod
    def _is_a_bucket(cls, value: float) -> float:
        if value not in ISTIO_DURATION_BUCKETS_MS:
            below = [b for b in ISTIO_DURATION_BUCKETS_MS if b < value][-1:]
            above = [b for b in ISTIO_DURATION_BUCKETS_MS if b > value][:1]
            raise ValueError(
                f"{value:.10g} ms is not a bound of Istio's latency histogram; "
                f"use one of {', '.join(f'{b:.10g}' for b in below + above)} "
                f"(all: {', '.join(f'{b:.10g}' for b in ISTIO_DURATION_BUCKETS_MS)})"
            )
        return value


class AnalysisSpec(BaseModel):
    """How a candidate is judged at each traffic step (see the module docstring for the YAML)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval_seconds: float = Field(default=5.0, gt=0, le=600)
    confidence: float = Field(default=0.95, ge=0.8, le=0.999)
    min_requests: int = Field(default=50, ge=1, le=10_000_000)
    max_wait_seconds: float = Field(default=900.0, gt=0, le=86_400)
    on_thin_evidence: Literal["wait", "top_up", "fail"] = "wait"
    top_up_requests: int = Field(default=20, ge=1, le=500)
    error_rate: ErrorRateLimits = Field(default_factory=ErrorRateLimits)
    latency: LatencyLimits = Field(default_factory=LatencyLimits)

    def criteria(self) -> Criteria:
        """What the judge holds the candidate to."""
        return Criteria(
            errors=self.error_rate.limits(),
            slow=self.latency.limits(),
            min_requests=self.min_requests,
            confidence=self.confidence,
        )

    @model_validator(mode="after")
    def _interval_fits(self) -> AnalysisSpec:
        if self.interval_seconds > self.max_wait_seconds:
            raise ValueError(
                "interval_seconds must not exceed max_wait_seconds (no evaluation would happen)"
            )
        return self
