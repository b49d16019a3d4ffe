"""The soak's scenario: which services, which pushes, which operator commands, all from one seed.

Nothing here depends on timing, so a fault-free run and a faulty run of one seed push the same
images and issue the same commands at the same logical places ("when the rollout is at step k").
Services are *auto* (short bake: rollouts run to their end) or *manual* (a bake long enough that
every good rollout waits at its step for the command the scenario planned there).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["good", "bad", "crash"]
Action = Literal["abort", "promote", "rollback", "pause-resume"]
ACTIONS: tuple[Action, ...] = ("abort", "promote", "rollback", "pause-resume")
MAX_ROLLOUTS_PER_SERVICE = 12  # tags good-N/bad-N/crash-N exist for N < 12 (examples/catalog.yaml)
MAX_SERVICES = 20  # repositories soak-00 … soak-19
NAMESPACE = "soak"
STEPS = (10, 50, 100)
AUTO_BAKE_SECONDS = 0.3
MANUAL_BAKE_SECONDS = 900.0  # far beyond any run: the step only ends by the planned command


@dataclass(frozen=True)
class Command:
    """An operator command issued when the rollout is SHIFTING at step index `at_step`."""

    at_step: int
    action: Action


@dataclass(frozen=True)
class PlannedRollout:
    """One push of the scenario."""

    service: str
    index: int
    kind: Kind
    command: Command | None = None

    @property
    def tag(self) -> str:
        """The image tag pushed (fresh per rollout: never the stable image again)."""
        return f"{self.kind}-{self.index}"


@dataclass(frozen=True)
class PlannedService:
    """One service and its pushes, in order."""

    name: str
    manual: bool
    rollouts: tuple[PlannedRollout, ...] = field(default_factory=tuple)

    @property
    def repository(self) -> str:
        """The image repository it follows (its own: no push starts another's rollout)."""
        return f"us-docker.pkg.dev/demo/{self.name}/iris"

    def spec(self) -> dict[str, Any]:
        """Its service spec."""
        return {
            "name": self.name,
            "namespace": NAMESPACE,
            "image": self.repository,
            "tag_filter": "(good|bad|crash)-[0-9]+",
            "steps": list(STEPS),
            "bake_seconds": MANUAL_BAKE_SECONDS if self.manual else AUTO_BAKE_SECONDS,
            "readiness_deadline_seconds": 30,
            # No user load in the soak: the steps are timed, the machinery is what is tested.
            "analysis": {"enabled": False},
            "validation": {
                "requests": [
                    {
                        "name": "setosa",
                        "path": "/predict",
                        "json": {"instances": [[5.1, 3.5, 1.4, 0.2]]},
                        "expect": {"status": 200, "json": {"predictions": ["setosa"]}},
                    }
                ]
            },
        }


def make_scenario(seed: int, rollouts: int, services: int) -> list[PlannedService]:
    """`rollouts` pushes spread over `services` services (first push of each: a good first deploy)."""
    if not 1 <= services <= MAX_SERVICES:
        raise ValueError(f"--services must be between 1 and {MAX_SERVICES}, got {services}")
    per_service = -(-rollouts // services)
    if rollouts < services or per_service > MAX_ROLLOUTS_PER_SERVICE:
        raise ValueError(
            f"--rollouts must be between {services} and {services * MAX_ROLLOUTS_PER_SERVICE} "
            f"for {services} services, got {rollouts}"
        )
    rng = random.Random(seed)
    plan: list[PlannedService] = []
    for s in range(services):
        name = f"soak-{s:02d}"
        manual = s % 2 == 1
        count = rollouts // services + (1 if s < rollouts % services else 0)
        planned = [PlannedRollout(name, 0, "good")]
        for i in range(1, count):
            kind: Kind = rng.choices(("good", "bad", "crash"), weights=(6, 2, 2))[0]
            command = None
            if manual and kind == "good":
                # At the first step: a manual service's steps only end by a command.
                command = Command(at_step=0, action=rng.choice(ACTIONS))
            planned.append(PlannedRollout(name, i, kind, command))
        plan.append(PlannedService(name, manual, tuple(planned)))
    return plan
