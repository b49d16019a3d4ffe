"""The transition table, tested as data."""

from __future__ import annotations

import inspect
import io
import tokenize
from enum import StrEnum

import pytest

from events.steps import StepType
from shared import phases
from shared.phases import (
    ACTIVE_PHASES,
    INITIAL_PHASE,
    STEP_FOR_PHASE,
    TERMINAL_PHASES,
    TRANSITIONS,
    IllegalTransition,
    Outcome,
    Phase,
    next_phase,
)


def test_terminal_and_active_partition_the_phases() -> None:
    """Every phase is either active or terminal, never both; the issue's terminal names exist."""
    assert set(Phase) == ACTIVE_PHASES | TERMINAL_PHASES
    assert not ACTIVE_PHASES & TERMINAL_PHASES
    assert {p.value for p in TERMINAL_PHASES} == {
        "PROMOTED",
        "FAILED",
        "ROLLED_BACK",
        "SUPERSEDED",
        "DELETED",
    }
    assert all(p.value == p.value.upper() for p in Phase)
    assert INITIAL_PHASE in ACTIVE_PHASES


@pytest.mark.parametrize("phase", sorted(ACTIVE_PHASES))
def test_every_active_phase_can_be_superseded_and_rolled_back(phase: Phase) -> None:
    """A newer image, an operator, or deleting the service can end a rollout wherever it is."""
    assert next_phase(phase, Outcome.SUPERSEDED) is Phase.SUPERSEDED
    assert next_phase(phase, Outcome.ROLLBACK_REQUESTED) is Phase.ROLLED_BACK
    assert next_phase(phase, Outcome.ABORT_REQUESTED) is Phase.ROLLED_BACK
    assert next_phase(phase, Outcome.SERVICE_DELETED) is Phase.DELETED


@pytest.mark.parametrize("phase", sorted(TERMINAL_PHASES))
def test_terminal_phases_have_no_outgoing_edges(phase: Phase) -> None:
    """Nothing moves a finished rollout, whatever the outcome."""
    assert not [key for key in TRANSITIONS if key[0] is phase]
    assert phase.terminal and phase.step is None
    for outcome in Outcome:
        with pytest.raises(IllegalTransition):
            next_phase(phase, outcome)


def test_every_non_terminal_phase_has_a_step() -> None:
    """Each active phase is advanced by exactly one step function, and every step advances one phase."""
    assert set(STEP_FOR_PHASE) == ACTIVE_PHASES
    assert set(STEP_FOR_PHASE.values()) == set(StepType)
    assert all(phase.step is STEP_FOR_PHASE[phase] for phase in ACTIVE_PHASES)


def test_next_phase_raises_on_illegal_edges() -> None:
    """Edges missing from the table are refused, with both ends named."""
    with pytest.raises(IllegalTransition, match="no transition from DEPLOYING on promoted"):
        next_phase(Phase.DEPLOYING, Outcome.PROMOTED)
    illegal = [(p, o) for p in Phase for o in Outcome if (p, o) not in TRANSITIONS]
    assert illegal  # the table is not complete by construction
    for phase, outcome in illegal:
        with pytest.raises(IllegalTransition):
            next_phase(phase, outcome)


def test_created_is_a_log_entry_not_a_transition() -> None:
    """The first log entry of every rollout does not move a phase."""
    assert not [key for key in TRANSITIONS if key[1] is Outcome.CREATED]


def test_every_target_is_reachable_from_the_initial_phase() -> None:
    """Walking the table from DEPLOYING reaches every phase (no dead entries in the enum)."""
    seen, frontier = {INITIAL_PHASE}, [INITIAL_PHASE]
    while frontier:
        phase = frontier.pop()
        for (source, _outcome), target in TRANSITIONS.items():
            if source is phase and target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(Phase)


def test_happy_paths_through_the_table() -> None:
    """A first deploy and a stepped rollout both reach PROMOTED along table edges."""
    first = [Outcome.DEPLOYED, Outcome.READY, Outcome.FIRST_DEPLOY_VALIDATED, Outcome.PROMOTED]
    stepped = [
        Outcome.DEPLOYED,
        Outcome.READY,
        Outcome.VALIDATION_PASSED,
        Outcome.STEP_APPLIED,
        Outcome.STEP_PASSED,
        Outcome.STEP_APPLIED,
        Outcome.LAST_STEP_PASSED,
        Outcome.PROMOTED,
    ]
    for path in (first, stepped):
        phase = INITIAL_PHASE
        for outcome in path:
            phase = next_phase(phase, outcome)
        assert phase is Phase.PROMOTED


def member_comments(enum_class: type[StrEnum]) -> dict[str, str]:
    """The `# ...` comment attached to each member assignment in an enum's source."""
    source = inspect.getsource(enum_class)
    comments: dict[str, str] = {}
    current: str | None = None
    depth = 0
    at_line_start = True
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        if token.type == tokenize.NAME and at_line_start and depth == 0:
            current = token.string if token.string in enum_class.__members__ else None
        elif token.type == tokenize.COMMENT and current is not None:
            comments[current] = comments.get(current, "") + token.string.lstrip("# ")
        at_line_start = token.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT) or (
            at_line_start and token.type in (tokenize.NL, tokenize.COMMENT)
        )
    return comments


def test_each_phase_has_a_documented_meaning() -> None:
    """Each Phase member carries its one-line meaning next to it, and the meanings differ."""
    comments = member_comments(Phase)
    missing = [p.name for p in Phase if len(comments.get(p.name, "")) < 15]
    assert not missing, f"phases without a documented meaning: {missing}"
    assert len(set(comments.values())) == len(Phase)
    assert phases.Phase.__doc__


def test_outcome_values_are_unique_lower_case_ids() -> None:
    """Outcomes are spelled in lower case and unique (they become decision ids)."""
    values = [o.value for o in Outcome]
    assert len(set(values)) == len(values)
    assert all(v == v.lower() and " " not in v for v in values)


def test_every_phase_deadline_is_an_edge_of_the_table() -> None:
    """A phase with a deadline of its own leaves it along a real edge, to a terminal phase."""
    from shared.phases import DEADLINE_OUTCOMES

    assert set(DEADLINE_OUTCOMES) == {Phase.PAUSED, Phase.AWAITING_APPROVAL}
    for phase, outcome in DEADLINE_OUTCOMES.items():
        assert next_phase(phase, outcome).terminal


def test_commands_are_edges_and_their_refusals_are_read_off_the_table() -> None:
    """Each command names an outcome; an illegal one is refused with where it applies."""
    from shared.phases import COMMANDS, command_refusal, phases_for

    assert set(COMMANDS) == {"abort", "promote", "pause", "resume", "approve", "rollback"}
    assert phases_for(Outcome.RESUME_REQUESTED) == [Phase.PAUSED]
    assert phases_for(Outcome.APPROVED) == [Phase.AWAITING_APPROVAL]
    assert phases_for(Outcome.PROMOTE_REQUESTED) == [Phase.SHIFTING, Phase.PAUSED]
    assert command_refusal("resume", Phase.PROMOTED) == (
        "resume is not possible while the rollout is PROMOTED; it applies to PAUSED"
    )
    assert command_refusal("pause", Phase.VALIDATING) == (
        "pause is not possible while the rollout is VALIDATING; it applies to SHIFTING"
    )
    assert "it applies to any rollout in flight" in str(command_refusal("abort", Phase.FAILED))
    for command, outcome in COMMANDS.items():
        for phase in Phase:
            legal = (phase, outcome) in TRANSITIONS
            assert (command_refusal(command, phase) is None) is legal


def test_held_phases_wait_for_a_person_and_have_a_deadline() -> None:
    """Paused and gated rollouts never wait forever: each has a deadline edge out of the phase."""
    from shared.phases import DEADLINE_OUTCOMES, HELD_PHASES

    assert {Phase.PAUSED, Phase.AWAITING_APPROVAL} == HELD_PHASES
    assert set(DEADLINE_OUTCOMES) >= HELD_PHASES
    assert next_phase(Phase.PAUSED, Outcome.PAUSE_DEADLINE) is Phase.ROLLED_BACK
    assert next_phase(Phase.AWAITING_APPROVAL, Outcome.APPROVAL_DEADLINE) is Phase.ROLLED_BACK
    assert next_phase(Phase.PAUSED, Outcome.RESUME_REQUESTED) is Phase.SHIFTING
    assert next_phase(Phase.PROMOTING, Outcome.APPROVAL_REQUIRED) is Phase.AWAITING_APPROVAL
    assert next_phase(Phase.AWAITING_APPROVAL, Outcome.APPROVED) is Phase.PROMOTING


def test_births_are_data_too() -> None:
    """A rollout starts DEPLOYING (or SUPERSEDED) on a push, ROLLED_BACK as a rollback record."""
    from shared.phases import BIRTHS, birth_phase

    assert birth_phase(Outcome.CREATED, Phase.DEPLOYING) is Phase.DEPLOYING
    assert birth_phase(Outcome.ROLLBACK_REQUESTED, Phase.ROLLED_BACK) is Phase.ROLLED_BACK
    with pytest.raises(IllegalTransition, match="cannot start PROMOTED on created"):
        birth_phase(Outcome.CREATED, Phase.PROMOTED)
    assert INITIAL_PHASE in BIRTHS[Outcome.CREATED]
