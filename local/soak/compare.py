"""Compare a faulty soak run with the fault-free run of the same seed.

Decisions are compared by what they say (phases, outcome, reason) with what differs between any two
runs taken out: rollout ids (they hash the push's message id), times and measured durations.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_ROLLOUT_ID = re.compile(r"\b[a-z0-9-]+-[0-9a-f]{12}-[0-9a-f]{6}\b")
_NUMBER_WITH_UNIT = re.compile(r"\d+(\.\d+)?\s?(ms|s)\b")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.+Z-]+")

Key = tuple[str, int]  # (service, index of the push)


# How many tries a cold candidate needed before it answered (validation's warm-up) depends on the
# machine's load, not on what was decided.
_ATTEMPTS = re.compile(r" after \d+ attempts")
# A deploy redelivered after a crash that followed its Kubernetes call finds the revision it
# created: the same revision, worded as reused.
_REUSED = re.compile(r"\b(created|reused existing) revision\b")


def normalize_reason(reason: str) -> str:
    """The reason without run-specific ids, timestamps, durations and warm-up attempts."""
    reason = _ATTEMPTS.sub("", reason)
    reason = _REUSED.sub("<deployed> revision", reason)
    reason = _TIMESTAMP.sub("<time>", reason)
    reason = _ROLLOUT_ID.sub("<rollout>", reason)
    return _NUMBER_WITH_UNIT.sub("<duration>", reason)


def decision_log(decisions: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """The decision log as comparable entries, in order."""
    return [
        (d["phase_from"], d["phase_to"], d["outcome"], normalize_reason(d.get("reason") or ""))
        for d in sorted(decisions, key=lambda d: d["seq"])
    ]


@dataclass
class Comparison:
    """What differs between the faulty run and the baseline."""

    rollouts: int = 0
    lost: list[str] = field(default_factory=list)
    wrong_phase: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    wrong_traffic: list[str] = field(default_factory=list)
    # Same serving split, but a different 0 % entry (a warm `previous` or a failed candidate's
    # tag): what users are served is right, the route table is not; wrong all the same.
    route_drift: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated, missing or wrong (0 % routes included)."""
        return not (
            self.lost
            or self.wrong_phase
            or self.duplicated
            or self.missing
            or self.wrong_traffic
            or self.route_drift
        )

    def converge(self) -> tuple[float, float]:
        """(median, max) seconds from push to the rollout's end."""
        if not self.seconds:
            return (0.0, 0.0)
        return statistics.median(self.seconds), max(self.seconds)


def _serving(traffic: list[list[Any]]) -> list[list[Any]]:
    """The entries that take traffic (percent above 0)."""
    return [t for t in traffic if int(t[1]) > 0]


def compare(faulty: dict[str, Any], baseline: dict[str, Any]) -> Comparison:
    """Compare two run documents (see `run_document`)."""
    result = Comparison()
    base_rollouts = {(r["service"], r["index"]): r for r in baseline["rollouts"]}
    for r in faulty["rollouts"]:
        key = f"{r['service']}#{r['index']} ({r['tag']})"
        result.rollouts += 1
        expected = base_rollouts.get((r["service"], r["index"]))
        if r.get("lost") or r.get("phase") is None:
            result.lost.append(f"{key}: {r.get('lost') or 'no rollout'}")
            continue
        result.seconds.append(float(r["seconds"]))
        if expected is None:
            result.lost.append(f"{key}: not in the baseline")
            continue
        if r["phase"] != expected["phase"]:
            result.wrong_phase.append(f"{key}: {r['phase']}, baseline {expected['phase']}")
        got = Counter(decision_log(r["decisions"]))
        want = Counter(decision_log(expected["decisions"]))
        extra, absent = got - want, want - got
        if extra:
            result.duplicated.append(f"{key}: {sorted(extra.elements())}")
        if absent:
            result.missing.append(f"{key}: {sorted(absent.elements())}")
    base_traffic = {s["name"]: s["traffic"] for s in baseline["services"]}
    for s in faulty["services"]:
        want_traffic = base_traffic.get(s["name"])
        got_all, want_all = [list(t) for t in s["traffic"]], [list(t) for t in want_traffic or []]
        if got_all == want_all:
            continue
        line = f"{s['name']}: {s['traffic']}, baseline {want_traffic}"
        if _serving(got_all) == _serving(want_all):
            result.route_drift.append(line)
        else:
            result.wrong_traffic.append(line)
    return result


def run_document(services: list[Any], *, seed: int, faults: dict[str, int]) -> dict[str, Any]:
    """A run's results as JSON-ready data (saved as a baseline with --save)."""
    return {
        "seed": seed,
        "faults": faults,
        "services": [{"name": s.name, "traffic": [list(t) for t in s.traffic]} for s in services],
        "rollouts": [
            {
                "service": r.service,
                "index": r.index,
                "tag": r.tag,
                "rollout_id": r.rollout_id,
                "phase": r.phase,
                "seconds": r.seconds,
                "lost": r.lost,
                "decisions": [
                    {k: d.get(k) for k in ("seq", "phase_from", "phase_to", "outcome", "reason")}
                    for d in r.decisions
                ],
            }
            for s in services
            for r in s.rollouts
        ],
    }
