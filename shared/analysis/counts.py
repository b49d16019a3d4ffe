"""Measured request counts for one revision over one window: the only input the judge needs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ArmCounts:
    """Requests, errors and slow requests one revision served in a window (all counts, never rates)."""

    requests: int = 0
    errors: int = 0  # requests answered with a status the criteria count as an error (5xx)
    slow: int = 0  # requests slower than the latency threshold (from the histogram buckets)

    def __post_init__(self) -> None:
        if self.requests < 0 or self.errors < 0 or self.slow < 0:
            raise ValueError(f"counts must not be negative: {self}")
        if self.errors > self.requests or self.slow > self.requests:
            raise ValueError(f"errors and slow requests cannot exceed requests: {self}")

    def plus(self, other: ArmCounts) -> ArmCounts:
        """The counts of both windows together."""
        return ArmCounts(
            self.requests + other.requests, self.errors + other.errors, self.slow + other.slow
        )

    def since(self, earlier: ArmCounts) -> ArmCounts:
        """What was added after `earlier` (clamped at zero: a counter reset is not negative traffic)."""
        requests = max(0, self.requests - earlier.requests)
        return ArmCounts(
            requests,
            min(requests, max(0, self.errors - earlier.errors)),
            min(requests, max(0, self.slow - earlier.slow)),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the decision log and the rollout document."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ArmCounts:
        """Inverse of as_dict (missing fields are zero)."""
        data = data or {}
        return cls(
            int(data.get("requests", 0)), int(data.get("errors", 0)), int(data.get("slow", 0))
        )
