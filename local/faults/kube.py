"""Kubernetes API faults for the local cluster: 5xx answers, 409 conflicts, slow answers, dropped watches.

The local API server asks ``plan(method, watch=...)`` before serving each resource request
(discovery, OpenAPI and health paths are never faulted: kubectl's set-up is not what is tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from local.faults.counts import Dice, FaultCounts
from local.faults.spec import KubeFaults, read_spec

WRITES = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class KubePlan:
    """What the API server does to one request (nothing, when every field is empty)."""

    slow_seconds: float = 0.0
    error_code: int | None = None  # answer 500/503 without doing anything
    conflict: bool = False  # answer 409 Conflict without doing anything (writes only)
    drop_watch: bool = False  # cut the watch's connection after its first event

    def kinds(self) -> list[str]:
        """The fault kinds this plan injects, for the counts."""
        kinds = ["slow"] if self.slow_seconds else []
        if self.error_code is not None:
            kinds.append(f"error_{self.error_code}")
        kinds += ["conflict"] if self.conflict else []
        kinds += ["drop_watch"] if self.drop_watch else []
        return kinds


class KubeFaultInjector:
    """Plans faults for the API server's requests from one seeded stream, and counts them."""

    def __init__(self, faults: KubeFaults, dice: Dice, counts: FaultCounts) -> None:
        self.faults = faults
        self.dice = dice
        self.counts = counts

    @classmethod
    def from_files(cls, spec_path: Path, counts_path: Path) -> KubeFaultInjector:
        """The injector a `local.kube serve --faults FILE` process uses."""
        spec = read_spec(spec_path)
        return cls(spec.kube or KubeFaults(), Dice(spec.seed, "kube"), FaultCounts(counts_path))

    def plan(self, method: str, *, watch: bool) -> KubePlan:
        """Roll the faults for one request (a fixed number of draws per request)."""
        f = self.faults
        slow, error, conflict, drop = (
            self.dice.hit(f.slow),
            self.dice.hit(f.error),
            self.dice.hit(f.conflict),
            self.dice.hit(f.drop_watch),
        )
        code = self.dice.choice((500, 503))
        if watch:
            plan = KubePlan(drop_watch=drop)
        else:
            plan = KubePlan(
                slow_seconds=f.slow_seconds if slow else 0.0,
                error_code=code if error else None,
                conflict=conflict and not error and method in WRITES,
            )
        for kind in plan.kinds():
            self.counts.add(kind)
        return plan
