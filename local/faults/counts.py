"""What each injector injected, kept as a small JSON file per injector under the stack's state folder."""

from __future__ import annotations

import json
import os
import random
import threading
from collections import Counter
from pathlib import Path


class Dice:
    """One injector's seeded stream of decisions: the same seed and calls give the same faults."""

    def __init__(self, seed: int, injector: str) -> None:
        self._random = random.Random(f"{seed}:{injector}")
        self._lock = threading.Lock()

    def hit(self, probability: float) -> bool:
        """True with `probability` (a draw is made even for 0, so streams stay aligned)."""
        with self._lock:
            return self._random.random() < probability

    def uniform(self, low: float, high: float) -> float:
        """A seeded draw in [low, high]."""
        with self._lock:
            return self._random.uniform(low, high)

    def choice(self, options: tuple[int, ...]) -> int:
        """A seeded pick."""
        with self._lock:
            return self._random.choice(options)


class FaultCounts:
    """Counts by fault kind, written atomically to `path` on every change (faults are rare)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._flush()

    def add(self, kind: str, n: int = 1) -> None:
        """Count `n` more faults of `kind`."""
        with self._lock:
            self._counts[kind] += n
            self._flush()

    def snapshot(self) -> dict[str, int]:
        """The counts so far."""
        with self._lock:
            return dict(self._counts)

    def _flush(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(dict(sorted(self._counts.items()))))
        temporary.replace(self.path)


def read_counts(folder: Path) -> dict[str, dict[str, int]]:
    """Every injector's counts in `folder`, by injector (the file's stem)."""
    found: dict[str, dict[str, int]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            found[path.stem] = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError):
            continue  # being replaced right now; the next read sees it
    return found


def totals_by_kind(folder: Path) -> dict[str, int]:
    """The counts of every injector summed by kind (e.g. `delivery.duplicate`)."""
    totals: Counter[str] = Counter()
    for injector, counts in read_counts(folder).items():
        family = injector.split("-", 1)[0]
        for kind, n in counts.items():
            totals[f"{family}.{kind}"] += n
    return dict(sorted(totals.items()))
