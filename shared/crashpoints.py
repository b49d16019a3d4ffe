"""Named crash points in the step engine: where a fault-injection run may end the worker mid-step.

Production runs with none armed: ``reach`` is then one global lookup. The local stack arms them
(``HEKATON_CRASH_POINTS=after_commit:0.05,before_publish:0.05`` with ``HEKATON_CRASH_SEED``) to
prove DESIGN §3's "crash anywhere": a crash after a side effect converges on redelivery, one after
the commit is caught up by the sweep. A firing point ends the process with ``os._exit`` — no
``finally``, no flush, no answer to Pub/Sub — exactly what an out-of-memory kill leaves behind.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Mapping

AFTER_KUBE = "after_kube"  # the step's Kubernetes calls are made, nothing is written yet
AFTER_COMMIT = "after_commit"  # the transition is in Firestore, its notifications unpublished
BEFORE_PUBLISH = "before_publish"  # about to publish the next step's event
POINTS = (AFTER_KUBE, AFTER_COMMIT, BEFORE_PUBLISH)

# The exit status of an injected crash: the local stack's supervisor restarts only this one.
CRASH_EXIT_CODE = 86


class CrashPoints:
    """Armed crash points: each fires with its probability, drawn from one seeded stream."""

    def __init__(
        self,
        probabilities: Mapping[str, float],
        seed: int | str,
        *,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self.probabilities = dict(probabilities)
        self._random = random.Random(seed)
        self._exit = exit

    def reached(self, point: str) -> bool:
        """Roll for `point`; on a hit, end the process (with a test's `exit`, return True)."""
        probability = self.probabilities.get(point, 0.0)
        if probability <= 0.0 or self._random.random() >= probability:
            return False
        # One line on stderr, so the function's log tells an injected crash from a real one.
        print(f"hekaton: injected crash at {point}", file=sys.stderr, flush=True)
        self._exit(CRASH_EXIT_CODE)
        return True


def parse(text: str) -> dict[str, float]:
    """`after_commit:0.05,before_publish:0.05` as {point: probability}; ValueError names a bad entry."""
    points: dict[str, float] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, sep, value = entry.partition(":")
        name = name.strip()
        if name not in POINTS:
            raise ValueError(f"unknown crash point {name!r}; choose from {', '.join(POINTS)}")
        try:
            probability = float(value) if sep else float("nan")
        except ValueError:
            probability = float("nan")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"crash point {name}: probability must be in [0, 1], got {value!r}")
        points[name] = probability
    return points


_armed: CrashPoints | None = None


def arm(points: CrashPoints | None) -> None:
    """Arm these crash points for the process (None disarms)."""
    global _armed
    _armed = points


def reach(point: str) -> None:
    """The engine passes `point`; an armed point may end the process here. A no-op when unarmed."""
    if _armed is not None:
        _armed.reached(point)
