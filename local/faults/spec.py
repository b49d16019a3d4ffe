"""The fault spec of one local stack run: which faults each component injects, how often, from which seed.

Off unless asked for (``hekaton up --faults FILE|all``). A file holds a ``faults:`` mapping::

    faults:
      seed: 7
      delivery: {duplicate: 0.1, reorder: 0.1, delay: 0.1, fail: 0.1}
      crash: {after_kube: 0.02, after_commit: 0.02, before_publish: 0.02}
      kube: {error: 0.03, conflict: 0.03, slow: 0.05, drop_watch: 0.3}
      firestore: {every_seconds: 20, down_seconds: 1.5, mode: both}

A missing section injects nothing there. The spec is written to the state folder as JSON and each
injector (a separate process) reads it from there, so stack.json records what the run injects.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.crashpoints import POINTS

Probability = float


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeliveryFaults(_Section):
    """The delivery proxy between Pub/Sub's pushes and the functions."""

    duplicate: Probability = Field(default=0.0, ge=0, le=1)  # the function gets it twice
    reorder: Probability = Field(default=0.0, ge=0, le=1)  # held until a later one went first
    delay: Probability = Field(default=0.0, ge=0, le=1)
    fail: Probability = Field(default=0.0, ge=0, le=1)  # answered 500/503: Pub/Sub redelivers
    max_delay_seconds: float = Field(default=1.0, gt=0, le=30)
    hold_seconds: float = Field(default=1.0, gt=0, le=30)  # longest a reordered push is held


class CrashFaults(_Section):
    """Crash points of the step engine, per point a probability (shared/crashpoints.py)."""

    after_kube: Probability = Field(default=0.0, ge=0, le=1)
    after_commit: Probability = Field(default=0.0, ge=0, le=1)
    before_publish: Probability = Field(default=0.0, ge=0, le=1)

    def env_value(self) -> str:
        """The HEKATON_CRASH_POINTS value ('' when none is armed)."""
        return ",".join(f"{p}:{getattr(self, p)}" for p in POINTS if getattr(self, p) > 0)


class KubeFaults(_Section):
    """The local Kubernetes API answering badly, per resource request."""

    error: Probability = Field(default=0.0, ge=0, le=1)  # 500 or 503, nothing done
    conflict: Probability = Field(default=0.0, ge=0, le=1)  # writes only: 409, nothing done
    slow: Probability = Field(default=0.0, ge=0, le=1)
    slow_seconds: float = Field(default=0.5, gt=0, le=30)
    drop_watch: Probability = Field(default=0.0, ge=0, le=1)  # a watch cut after its first event


class FirestoreFaults(_Section):
    """Firestore unreachable for a while: a TCP proxy in front of the emulator has outage windows."""

    every_seconds: float = Field(default=20.0, gt=0)  # an outage starts this often
    down_seconds: float = Field(default=1.5, gt=0)  # and lasts this long
    first_after_seconds: float = Field(default=5.0, ge=0)
    # refuse: connections cut and refused; stall: bytes held (connections hang); both: alternate.
    mode: Literal["refuse", "stall", "both"] = "both"


class FaultSpec(_Section):
    """Every injector's settings for one run."""

    seed: int = 0
    delivery: DeliveryFaults | None = None
    crash: CrashFaults | None = None
    kube: KubeFaults | None = None
    firestore: FirestoreFaults | None = None

    def kinds(self) -> list[str]:
        """The sections that inject something."""
        return [k for k in ("delivery", "crash", "kube", "firestore") if getattr(self, k)]

    def to_json(self) -> str:
        """The form the injectors read."""
        return self.model_dump_json(exclude_none=True)


class FaultSpecError(ValueError):
    """A fault spec that cannot be used; the message names the field."""


def all_faults(seed: int = 0) -> FaultSpec:
    """Every fault kind on, at rates a rollout must survive (`--faults all`)."""
    return FaultSpec(
        seed=seed,
        delivery=DeliveryFaults(duplicate=0.1, reorder=0.1, delay=0.1, fail=0.1),
        crash=CrashFaults(after_kube=0.02, after_commit=0.02, before_publish=0.02),
        kube=KubeFaults(error=0.03, conflict=0.03, slow=0.05, drop_watch=0.3),
        firestore=FirestoreFaults(),
    )


def parse_spec(document: Any, *, where: str = "fault spec") -> FaultSpec:
    """A FaultSpec from a parsed document (`{faults: {...}}` or the mapping itself)."""
    if isinstance(document, dict) and set(document) == {"faults"}:
        document = document["faults"]
    if not isinstance(document, dict):
        raise FaultSpecError(f"{where}: expected a mapping under `faults:`")
    try:
        return FaultSpec.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"faults.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise FaultSpecError(f"{where}: {problems}") from None


def load_spec(source: str, *, seed: int | None = None) -> FaultSpec:
    """`all` (every kind, see all_faults) or a YAML/JSON file; `seed` overrides the spec's."""
    if source == "all":
        spec = all_faults()
    else:
        path = Path(source)
        try:
            document = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise FaultSpecError(f"cannot read fault spec {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise FaultSpecError(f"fault spec {path} is not valid YAML: {exc}") from None
        spec = parse_spec(document, where=str(path))
    return spec if seed is None else spec.model_copy(update={"seed": seed})


SPEC_FILE = "faults.json"
COUNTS_DIR = "faults"


def write_spec(state_dir: Path, spec: FaultSpec) -> Path:
    """Write the run's spec where the injectors read it; returns its path."""
    path = state_dir / SPEC_FILE
    path.write_text(spec.to_json())
    return path


def read_spec(path: Path) -> FaultSpec:
    """The spec an injector was started with."""
    return parse_spec(json.loads(path.read_text()), where=str(path))


def injector_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The arguments every injector process takes: its spec, its counts file, where to listen."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--spec", type=Path, required=True, help="the run's fault spec (JSON)")
    parser.add_argument("--counts", type=Path, required=True, help="where to count (JSON)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser
