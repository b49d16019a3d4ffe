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
    PAUSED = (
        "PAUSED"  # an operator froze the rollout: traffic stays as it is until resume or deadline
    )
    AWAITING_APPROVAL = (
        "AWAITING_APPROVAL"  # the spec's manual gate: promotion waits for approve, or its deadline
    )
    PROMOTING = "PROMOTING"  # every step passed; candidate is being given 100 % and made stable
    PROMOTED = "PROMOTED"  # candidate serves 100 % and is the service's stable revision
    FAILED = "FAILED"  # candidate never took user traffic and was rejected; stable untouched
    ROLLED_BACK = (
        "ROLLED_BACK"  # candidate had traffic (or an operator asked); traffic back on stable
    )
    SUPERSEDED = "SUPERSEDED"  # a newer image for the same service replaced this rollout
    DELETED = "DELETED"  # the service was deleted (its Knative Service removed) while this ran

    @property
    def terminal(self) -> bool:
        """True when nothing more will happen to a rollout in this phase."""
        return self in TERMINAL_PHASES

    @property
    def step(self) -> StepType | None:
        """The step (function) that advances a rollout in this phase; None when terminal."""
        return STEP_FOR_PHASE.get(self)


TERMINAL_PHASES = frozenset(
    {Phase.PROMOTED, Phase.FAILED, Phase.ROLLED_BACK, Phase.SUPERSEDED, Phase.DELETED}
)
ACTIVE_PHASES = frozenset(set(Phase) - TERMINAL_PHASES)

STEP_FOR_PHASE: dict[Phase, StepType] = {
    Phase.DEPLOYING: StepType.DEPLOY,
    Phase.WAITING_READY: StepType.WAIT_READY,
    Phase.VALIDATING: StepType.VALIDATE,
    Phase.SHIFTING: StepType.SHIFT,
    # Held phases wait for a person; their step only enforces the phase's deadline.
    Phase.PAUSED: StepType.SHIFT,
    Phase.AWAITING_APPROVAL: StepType.PROMOTE,
    Phase.PROMOTING: StepType.PROMOTE,
}

# Phases that wait for an operator's command: the engine never runs the step's act in them, only
# their deadline edge once Rollout.deadline_at has passed.
HELD_PHASES = frozenset({Phase.PAUSED, Phase.AWAITING_APPROVAL})


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
    STEP_APPLIED = "step_applied"
    STEP_PASSED = "step_passed"
    LAST_STEP_PASSED = "last_step_passed"
    ANALYSIS_FAILED = "analysis_failed"
    APPROVAL_REQUIRED = "approval_required"
    APPROVAL_DEADLINE = "approval_deadline_exceeded"
    PROMOTED = "promoted"
    SUPERSEDED = "superseded"
    PAUSE_DEADLINE = "pause_deadline_exceeded"
    SERVICE_DELETED = "service_deleted"
    # A step met an error no retry can fix (its Knative Service deleted behind hekaton's back, a
    # write the cluster refuses): the rollout ends, saying so, instead of being re-emitted forever.
    STEP_IMPOSSIBLE = "step_impossible"
    # Operator commands (see COMMANDS): each is an edge like any other.
    ROLLBACK_REQUESTED = "rollback_requested"
    ABORT_REQUESTED = "abort_requested"
    PROMOTE_REQUESTED = "promote_requested"
    PAUSE_REQUESTED = "pause_requested"
    RESUME_REQUESTED = "resume_requested"
    APPROVED = "approved"


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
    (Phase.SHIFTING, Outcome.STEP_APPLIED): Phase.SHIFTING,
    (Phase.SHIFTING, Outcome.STEP_PASSED): Phase.SHIFTING,
    (Phase.SHIFTING, Outcome.LAST_STEP_PASSED): Phase.PROMOTING,
    (Phase.SHIFTING, Outcome.ANALYSIS_FAILED): Phase.ROLLED_BACK,
    (Phase.SHIFTING, Outcome.PROMOTE_REQUESTED): Phase.PROMOTING,
    (Phase.SHIFTING, Outcome.PAUSE_REQUESTED): Phase.PAUSED,
    (Phase.PAUSED, Outcome.RESUME_REQUESTED): Phase.SHIFTING,
    (Phase.PAUSED, Outcome.PROMOTE_REQUESTED): Phase.PROMOTING,
    (Phase.PAUSED, Outcome.PAUSE_DEADLINE): Phase.ROLLED_BACK,
    # The spec's approval gate sits before promotion: the promote step stops there until approved.
    (Phase.PROMOTING, Outcome.APPROVAL_REQUIRED): Phase.AWAITING_APPROVAL,
    (Phase.AWAITING_APPROVAL, Outcome.APPROVED): Phase.PROMOTING,
    (Phase.AWAITING_APPROVAL, Outcome.APPROVAL_DEADLINE): Phase.ROLLED_BACK,
    (Phase.PROMOTING, Outcome.PROMOTED): Phase.PROMOTED,
    **{(phase, Outcome.SUPERSEDED): Phase.SUPERSEDED for phase in _EVERY_ACTIVE},
    **{(phase, Outcome.ROLLBACK_REQUESTED): Phase.ROLLED_BACK for phase in _EVERY_ACTIVE},
    **{(phase, Outcome.ABORT_REQUESTED): Phase.ROLLED_BACK for phase in _EVERY_ACTIVE},
    **{(phase, Outcome.SERVICE_DELETED): Phase.DELETED for phase in _EVERY_ACTIVE},
    # Before the candidate took user traffic the rollout failed; after, it was rolled back.
    **{
        (phase, Outcome.STEP_IMPOSSIBLE): Phase.FAILED
        for phase in (Phase.DEPLOYING, Phase.WAITING_READY, Phase.VALIDATING)
    },
    **{
        (phase, Outcome.STEP_IMPOSSIBLE): Phase.ROLLED_BACK
        for phase in (Phase.SHIFTING, Phase.PAUSED, Phase.PROMOTING, Phase.AWAITING_APPROVAL)
    },
}

# How a rollout comes to exist: its first log entry's outcome and the phases it may be born in.
# A push starts DEPLOYING (or SUPERSEDED at once when a newer image was already pushed); an
# operator rollback with nothing in flight is kept as a rollout born ROLLED_BACK.
BIRTHS: dict[Outcome, frozenset[Phase]] = {
    Outcome.CREATED: frozenset({Phase.DEPLOYING, Phase.SUPERSEDED}),
    Outcome.ROLLBACK_REQUESTED: frozenset({Phase.ROLLED_BACK}),
}

# The operator commands and the edge each one takes. Where a command applies is read off the table.
COMMANDS: dict[str, Outcome] = {
    "abort": Outcome.ABORT_REQUESTED,
    "promote": Outcome.PROMOTE_REQUESTED,
    "pause": Outcome.PAUSE_REQUESTED,
    "resume": Outcome.RESUME_REQUESTED,
    "approve": Outcome.APPROVED,
    "rollback": Outcome.ROLLBACK_REQUESTED,
}


# Phases with a deadline of their own (Rollout.deadline_at), and the edge taken when it passes:
# every wait ends in a recorded outcome, never in retries forever. (Readiness and validation's
# warm-up keep their deadlines inside their steps: ready_deadline_at, validation.warmup_seconds.)
DEADLINE_OUTCOMES: dict[Phase, Outcome] = {
    Phase.PAUSED: Outcome.PAUSE_DEADLINE,
    Phase.AWAITING_APPROVAL: Outcome.APPROVAL_DEADLINE,
}


def phases_for(outcome: Outcome) -> list[Phase]:
    """The phases an outcome (e.g. a command's) leads out of, in the enum's order."""
    sources = {phase for phase, edge in TRANSITIONS if edge is outcome}
    return [phase for phase in Phase if phase in sources]


def command_refusal(command: str, phase: Phase) -> str | None:
    """Why `command` cannot apply to a rollout in `phase` (None when the table has the edge)."""
    outcome = COMMANDS[command]
    if (phase, outcome) in TRANSITIONS:
        return None
    where = phases_for(outcome)
    applies = (
        "any rollout in flight"
        if set(where) == ACTIVE_PHASES
        else " or ".join(p.value for p in where)
    )
    return f"{command} is not possible while the rollout is {phase.value}; it applies to {applies}"


class IllegalTransition(ValueError):
    """A step tried to move a rollout along an edge the table does not have (a bug, never input)."""


def birth_phase(outcome: Outcome, phase: Phase) -> Phase:
    """Check that a rollout may be born in `phase` with `outcome` as its first entry."""
    if phase not in BIRTHS.get(outcome, frozenset()):
        raise IllegalTransition(f"a rollout cannot start {phase.value} on {outcome.value}")
    return phase


def next_phase(phase: Phase, outcome: Outcome) -> Phase:
    """Look up the phase that `outcome` leads to from `phase`, or raise IllegalTransition."""
    try:
        return TRANSITIONS[(phase, outcome)]
    except KeyError:
        raise IllegalTransition(f"no transition from {phase.value} on {outcome.value}") from None
