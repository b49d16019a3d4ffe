"""Which revision a rollback may return to: one of this service's, that served, and is Ready now.

"Served" is read from hekaton's own records: a revision served user traffic as the stable revision
when it is the service's recorded stable revision, the revision of one of its PROMOTED rollouts, or
the stable revision a rollout of it protected (what took the traffic while that rollout ran). A
candidate that only ever held a canary share, or never got past validation, never served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.model import Rollout, ServiceRecord
from shared.phases import Phase
from shared.serving import ServingProvider

FULL_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
REVISION_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


class TargetRefused(ValueError):
    """The named target is not one a rollback may go to; the message says why."""


@dataclass(frozen=True)
class RollbackTarget:
    """A checked rollback target and the rollout that last deployed it (None when out of reach)."""

    revision: str
    origin: Rollout | None


def served_revisions(record: ServiceRecord, rollouts: list[Rollout]) -> set[str]:
    """Every revision hekaton's records show serving this service's traffic as its stable revision."""
    served = {record.stable_revision} if record.stable_revision else set()
    for rollout in rollouts:
        if rollout.phase is Phase.PROMOTED:
            served.add(rollout.revision)
        if rollout.stable_revision and rollout.kind == "push":
            served.add(rollout.stable_revision)
    return served


def name_target(record: ServiceRecord, rollouts: list[Rollout], requested: str) -> str:
    """The revision a requested `revision name | sha256:<64 hex>` means; TargetRefused when none."""
    if requested.startswith("sha256:"):
        if not FULL_DIGEST.fullmatch(requested):
            raise TargetRefused(
                f"{requested[:80]!r} is not a full image digest (sha256: and 64 hex digits); "
                "digests are matched exactly, never by prefix"
            )
        deployed = next((r for r in rollouts if r.digest == requested and r.kind == "push"), None)
        if deployed is None:
            raise TargetRefused(f"no rollout of {record.name} deployed image {requested}")
        return deployed.revision
    if not REVISION_NAME.fullmatch(requested):
        raise TargetRefused(f"{requested[:80]!r} is not a revision name or an image digest")
    return requested


def check_target(
    serving: ServingProvider, record: ServiceRecord, rollouts: list[Rollout], revision: str
) -> RollbackTarget:
    """The revision as a RollbackTarget if it is this service's, served, and Ready now; else TargetRefused."""
    if revision not in served_revisions(record, rollouts):
        raise TargetRefused(
            f"revision {revision} never served {record.name} as its stable revision "
            f"(served: {', '.join(sorted(served_revisions(record, rollouts))) or 'none'})"
        )
    health = serving.revision_health(record.namespace, revision)
    if not health.exists:
        raise TargetRefused(f"revision {revision} no longer exists in namespace {record.namespace}")
    if health.service != record.name:
        raise TargetRefused(
            f"revision {revision} belongs to service {health.service or '(none)'}, not {record.name}"
        )
    if health.ready is not True:
        why = f" ({health.reason})" if health.reason else ""
        raise TargetRefused(f"revision {revision} is not Ready now{why}")
    origin = next((r for r in rollouts if r.revision == revision and r.digest), None)
    return RollbackTarget(revision, origin)
