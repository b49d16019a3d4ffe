"""How an iris image version behaves, chosen by environment variables set in the image catalog.

IRIS_MODEL_VERSION     version string in every answer (default "dev")
IRIS_LABEL_SHIFT       rotate predicted labels by N classes: answers, but wrongly (default 0)
IRIS_BOUNDARY_SHIFT    move the versicolor/virginica boundary up by X cm: plausible answers that
                       disagree with the other versions near that boundary (default 0)
IRIS_CRASH_ON_START    if set, print this message and exit with code 1 before serving
IRIS_WARMUP_REQUESTS   /predict requests served normally before the faults below begin (default 0)
IRIS_FAIL_EVERY        after warm-up, every Nth /predict answers 500 (default 0: never)
IRIS_LATENCY_MS        after warm-up, added delay per /predict: "200" or a range "150-300"
IRIS_SEED              seed for the delays drawn from the range (default 0)
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T", int, float)


class BadBehaviour(ValueError):
    """An IRIS_* variable with a value the server cannot use; the message names it."""


@dataclass(frozen=True)
class Behaviour:
    """The knobs of one iris version."""

    version: str = "dev"
    label_shift: int = 0
    boundary_shift: float = 0.0
    crash_message: str | None = None
    warmup_requests: int = 0
    fail_every: int = 0
    latency_ms: tuple[float, float] = (0.0, 0.0)
    seed: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Behaviour:
        """Read the IRIS_* variables; raise BadBehaviour naming a malformed one."""
        return cls(
            version=env.get("IRIS_MODEL_VERSION") or "dev",
            label_shift=_integer(env, "IRIS_LABEL_SHIFT", minimum=None),
            boundary_shift=_centimetres(env, "IRIS_BOUNDARY_SHIFT"),
            crash_message=env.get("IRIS_CRASH_ON_START") or None,
            warmup_requests=_integer(env, "IRIS_WARMUP_REQUESTS", minimum=0),
            fail_every=_integer(env, "IRIS_FAIL_EVERY", minimum=0),
            latency_ms=_latency(env.get("IRIS_LATENCY_MS", "")),
            seed=_integer(env, "IRIS_SEED", minimum=None),
        )


@dataclass(frozen=True)
class Fault:
    """What to do to one /predict request."""

    fail: bool
    delay_seconds: float


class FaultPlan:
    """Counts /predict requests and decides, deterministically, which fail and how slow each is."""

    def __init__(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        self._random = random.Random(behaviour.seed)
        self._count = 0
        self._lock = threading.Lock()

    def next(self) -> Fault:
        """The fault for the next /predict request (thread-safe)."""
        b = self._behaviour
        with self._lock:
            self._count += 1
            after_warmup = self._count - b.warmup_requests
            if after_warmup <= 0:
                return Fault(fail=False, delay_seconds=0.0)
            low, high = b.latency_ms
            delay_ms = self._random.uniform(low, high) if high > low else low
        fail = b.fail_every > 0 and after_warmup % b.fail_every == 0
        return Fault(fail=fail, delay_seconds=delay_ms / 1000)


def _integer(env: Mapping[str, str], name: str, *, minimum: int | None) -> int:
    value = _read(env, name, int, "an integer") or 0
    if minimum is not None and value < minimum:
        raise BadBehaviour(f"{name}={env[name].strip()!r} must be at least {minimum}")
    return value


def _centimetres(env: Mapping[str, str], name: str) -> float:
    value = _read(env, name, float, "a number of centimetres") or 0.0
    if not math.isfinite(value):
        raise BadBehaviour(f"{name}={env[name].strip()!r} must be finite")
    return value


def _read(env: Mapping[str, str], name: str, convert: Callable[[str], T], what: str) -> T | None:
    """The variable converted, None if unset or empty; BadBehaviour naming it if malformed."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return convert(raw)
    except ValueError:
        raise BadBehaviour(f"{name}={raw!r} is not {what}") from None


def _latency(raw: str) -> tuple[float, float]:
    text = raw.strip()
    if not text:
        return (0.0, 0.0)
    low_text, _, high_text = text.partition("-")
    try:
        low = float(low_text)
        high = float(high_text) if high_text else low
    except ValueError:
        raise BadBehaviour(
            f"IRIS_LATENCY_MS={raw!r} must be milliseconds ('200') or a range ('150-300')"
        ) from None
    if not 0 <= low <= high:
        raise BadBehaviour(f"IRIS_LATENCY_MS={raw!r} must be a non-negative, increasing range")
    return (low, high)
