"""Rollout phases, the outcomes that move between them, and the transition table (data, tested as data)."""

from __future__ import annotations

from enum import StrEnum

from events.steps import StepType


class Phase(StrEnum):
    """Where a rollout is. Exactly one meaning each; the last four are terminal."""

    DEPLOYING = (
        "DEPLOYING"  # rollout accepted; the candidate revision is being created (0 % traffic)
    )
    WAITING_READY = (
        "WAITING_READY"  # revision created; polling its Ready condition until the deadline
    )
    VALIDATING = "VALIDATING"  # revision Ready; smoke requests against its tag URL are due
    SHIFTING = "SHIFTING"  # candidate holds steps[step_index] % of traffic; baking, then analysis
    PROMOTING = "PROMOTING"  # every step passed; candidate is being given 100 % and made stable
    PROMOTED = "PROMOTED"  # candidate serves 100 % and is the service's stable revision
    FAILED = "FAILED"  # candidate never took user traffic and was rejected; stable untouched
    ROLLED_BACK = (
        "ROLLED_BACK"  # candidate had traffic (or an operator asked); traffic back on stable
    )
    SUPERSEDED = "SUPERSEDED"  # a newer image for the same service replaced this rollout

    @property
    def terminal(self) -> bool:
        """True when nothing more will happen to a rollout in this phase."""
        return self in TERMINAL_PHASES

    @property
    def step(self) -> StepType | None:
        """The step (function) that advances a rollout in this phase; None when terminal."""
        return STEP_FOR_PHASE.get(self)


TERMINAL_PHASES = frozenset({Phase.PROMOTED, Phase.FAILED, Phase.ROLLED_BACK, Phase.SUPERSEDED})
ACTIVE_PHASES = frozenset(set(Phase) - TERMINAL_PHASES)

STEP_FOR_PHASE: dict[Phase, StepType] = {
    Phase.DEPLOYING: StepType.DEPLOY,
    Phase.WAITING_READY: StepType.WAIT_READY,
    Phase.VALIDATING: StepType.VALIDATE,
    Phase.SHIFTING: StepType.SHIFT,
    Phase.PROMOTING: StepType.PROMOTE,
}


INITIAL_PHASE = Phase.DEPLOYING


class Outcome(StrEnum):
    """What a step concluded; with the current phase it selects the next phase."""

    CREATED = "created"  # the first log entry of every rollout; not a transition

    DEPLOYED = "deployed"
    DEPLOY_FAILED = "deploy_failed"
    READY = "ready"
    REVISION_FAILED = "revision_failed"
    READY_DEADLINE = "ready_deadline_exceeded"
    VALIDATION_PASSED = "validation_passed"
    FIRST_DEPLOY_VALIDATED = "first_deploy_validated"
    VALIDATION_FAILED = "validation_failed"
    VALIDATION_DEADLINE = "validation_deadline_exceeded"
    STEP_APPLIED = "step_applied"
    STEP_PASSED = "step_passed"
    LAST_STEP_PASSED = "last_step_passed"
    ANALYSIS_FAILED = "analysis_failed"
    PROMOTED = "promoted"
    SUPERSEDED = "superseded"
    ROLLBACK_REQUESTED = "rollback_requested"


_EVERY_ACTIVE = sorted(ACTIVE_PHASES, key=list(Phase).index)

TRANSITIONS: dict[tuple[Phase, Outcome], Phase] = {
    (Phase.DEPLOYING, Outcome.DEPLOYED): Phase.WAITING_READY,
    (Phase.DEPLOYING, Outcome.DEPLOY_FAILED): Phase.FAILED,
    (Phase.WAITING_READY, Outcome.READY): Phase.VALIDATING,
    (Phase.WAITING_READY, Outcome.REVISION_FAILED): Phase.FAILED,
    (Phase.WAITING_READY, Outcome.READY_DEADLINE): Phase.FAILED,
    (Phase.VALIDATING, Outcome.VALIDATION_PASSED): Phase.SHIFTING,
    (Phase.VALIDATING, Outcome.FIRST_DEPLOY_VALIDATED): Phase.PROMOTING,
    (Phase.VALIDATING, Outcome.VALIDATION_FAILED): Phase.FAILED,
    (Phase.VALIDATING, Outcome.VALIDATION_DEADLINE): Phase.FAILED,
    (Phase.SHIFTING, Outcome.STEP_APPLIED): Phase.SHIFTING,
    (Phase.SHIFTING, Outcome.STEP_PASSED): Phase.SHIFTING,
    (Phase.SHIFTING, Outcome.LAST_STEP_PASSED): Phase.PROMOTING,
    (Phase.SHIFTING, Outcome.ANALYSIS_FAILED): Phase.ROLLED_BACK,
    (Phase.PROMOTING, Outcome.PROMOTED): Phase.PROMOTED,
    **{(phase, Outcome.SUPERSEDED): Phase.SUPERSEDED for phase in _EVERY_ACTIVE},
    **{(phase, Outcome.ROLLBACK_REQUESTED): Phase.ROLLED_BACK for phase in _EVERY_ACTIVE},
}


# Phases with a deadline of their own (Rollout.deadline_at), and the edge taken when it passes:
# every wait ends in a recorded outcome, never in retries forever.
DEADLINE_OUTCOMES: dict[Phase, Outcome] = {
    Phase.VALIDATING: Outcome.VALIDATION_DEADLINE,
}


class IllegalTransition(ValueError):
    """A step tried to move a rollout along an edge the table does not have (a bug, never input)."""


def next_phase(phase: Phase, outcome: Outcome) -> Phase:
    """Look up the phase that `outcome` leads to from `phase`, or raise IllegalTransition."""
    try:
        return TRANSITIONS[(phase, outcome)]
    except KeyError:
        raise IllegalTransition(f"no transition from {phase.value} on {outcome.value}") from None
