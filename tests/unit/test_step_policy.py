"""The step policy as data: one row per situation, the action it must give."""

from __future__ import annotations

import pytest

from shared.analysis.judge import Judgement, Verdict
from shared.analysis.policy import Action, WhenThin, decide


def _judgement(verdict: Verdict) -> Judgement:
    return Judgement(
        verdict, f"judge says {verdict}", (), 500, 0 if verdict != "continue" else 900, 0.95, 50
    )


P, F, C = Verdict.PASS, Verdict.FAIL, Verdict.CONTINUE
W, T, X = WhenThin.WAIT, WhenThin.TOP_UP, WhenThin.FAIL

# verdict, is_last, next_full, seconds, step requests, when_thin, expected action
CASES = [
    # FAIL rolls back at once, wherever and whenever
    (F, False, False, 5, 3, W, Action.ROLLBACK),
    (F, True, False, 500, 5000, W, Action.ROLLBACK),
    # baking: wait, whatever the evidence says (but FAIL above)
    (P, False, False, 30, 5000, W, Action.WAIT),
    (P, True, False, 59, 5000, X, Action.WAIT),
    # intermediate step: baked + min requests + no FAIL advances, PASS not needed
    (C, False, False, 60, 50, W, Action.ADVANCE),
    (P, False, False, 60, 50, W, Action.ADVANCE),
    # ... unless the next step is 100 %: then it needs PASS
    (C, False, True, 60, 500, W, Action.WAIT),
    (P, False, True, 60, 500, W, Action.ADVANCE),
    # last step: promote only on PASS with min requests in the step
    (P, True, False, 60, 50, W, Action.ADVANCE),
    (C, True, False, 60, 5000, W, Action.WAIT),
    (P, True, False, 60, 49, W, Action.WAIT),
    # thin evidence before the deadline: what when_thin says
    (C, False, False, 120, 10, W, Action.WAIT),
    (C, False, False, 120, 10, T, Action.TOP_UP),
    (C, False, False, 120, 10, X, Action.FAIL_NO_EVIDENCE),
    (C, True, False, 120, 5000, T, Action.TOP_UP),
    (C, True, False, 120, 5000, X, Action.FAIL_NO_EVIDENCE),
    # at the evidence deadline every mode ends the wait
    (C, True, False, 600, 5000, W, Action.FAIL_NO_EVIDENCE),
    (C, False, False, 600, 10, T, Action.FAIL_NO_EVIDENCE),
    (C, False, True, 700, 5000, W, Action.FAIL_NO_EVIDENCE),
    # ... but a decision reached at the deadline still counts
    (P, True, False, 600, 5000, W, Action.ADVANCE),
    (F, True, False, 600, 5000, W, Action.ROLLBACK),
]


@pytest.mark.parametrize(
    ("verdict", "is_last", "next_full", "seconds", "requests", "when_thin", "action"), CASES
)
def test_step_policy(
    verdict: Verdict,
    is_last: bool,
    next_full: bool,
    seconds: float,
    requests: int,
    when_thin: WhenThin,
    action: Action,
) -> None:
    decision = decide(
        _judgement(verdict),
        is_last=is_last,
        next_step_full=next_full,
        seconds_in_step=seconds,
        bake_seconds=60,
        step_candidate_requests=requests,
        min_requests=50,
        evidence_deadline_seconds=600,
        when_thin=when_thin,
    )
    assert decision.action is action
    assert decision.reason


def test_reasons_say_why() -> None:
    kw = {"bake_seconds": 60, "min_requests": 50, "evidence_deadline_seconds": 600}
    fail = decide(_judgement(F), is_last=False, seconds_in_step=5, step_candidate_requests=3, **kw)
    assert fail.reason == "judge says fail"
    promote = decide(
        _judgement(P), is_last=True, seconds_in_step=90, step_candidate_requests=900, **kw
    )
    assert promote.reason == "promote: judge says pass"
    thin = decide(
        _judgement(C), is_last=False, seconds_in_step=90, step_candidate_requests=12, **kw
    )
    assert thin.reason == "waiting for more traffic: 12 of 50 candidate requests in this step"
    late = decide(
        _judgement(C), is_last=True, seconds_in_step=600, step_candidate_requests=900, **kw
    )
    assert late.reason == "no decision within the 600s evidence deadline: judge says continue"
