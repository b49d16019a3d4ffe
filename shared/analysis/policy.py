"""The step decision: what a traffic step does with the judge's verdict. Pure, tested as a table.

Rules, in order:
1. FAIL rolls back at once, even during the bake: the FAIL is anytime-valid, so acting on the
   first one costs no extra false rollbacks (at most alpha over the whole canary).
2. Before the bake time has passed: wait.
3. An intermediate step advances once it has baked, has served `min_requests` candidate requests
   and the judge has not failed it (PASS is not required there) ...
4. ... except the step before a 100 % step (`next_step_full`), which advances only on PASS: at
   100 % the stable revision gets no traffic, so the comparison with it cannot improve any more.
   Holding at 50 % until PASS is where both revisions' evidence grows fastest.
5. The last step promotes only on PASS (and `min_requests` in that step). A false promotion
   therefore needs a false PASS (at most alpha), a false rollback a false FAIL (at most alpha).
6. Otherwise the evidence is thin. Until the step's evidence deadline, `when_thin` says what to
   do: `wait` for more user traffic, `top_up` (ask for golden-set traffic to the candidate), or
   `fail` at once. At the deadline every mode ends in `fail_no_evidence`: every wait has an end.

Why this rule (`bench/judge_bench.py --rule ...`, 1,000 runs per case, default criteria):
- `advance` (no FAIL is enough until the last step, PASS only to promote): at 10 req/s the
  last step waits for a PASS against a stable figure frozen after a 60 s step at 50 %: 67.5 %
  of good candidates ended without a decision (vs 44.2 %), and +30 % latency was rolled back
  after a median 720 s (vs 295 s); at 100 req/s it is the same as the default.
- `pass-every-step`: PASS at 10 % costs the most: at 100 req/s good candidates were promoted
  after a median 350 s (vs 180 s) and a 1 % error candidate rolled back after 170 s (vs 90 s);
  at 10 req/s no good candidate was promoted.
- `pass-before-full` (this module): the best figures in every case.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.analysis.judge import Judgement, Verdict


class Action(StrEnum):
    """What the shift step does next."""

    ADVANCE = "advance"  # next traffic step, or promote when this was the last one
    ROLLBACK = "rollback"  # the judge showed the candidate is worse than allowed
    WAIT = "wait"  # look again at the next wake-up
    TOP_UP = "top_up"  # ask for golden-set traffic to the candidate, then look again
    FAIL_NO_EVIDENCE = "fail_no_evidence"  # no decision possible in time: end the rollout


class WhenThin(StrEnum):
    """What to do while the evidence is too thin to decide (before the deadline)."""

    WAIT = "wait"
    TOP_UP = "top_up"
    FAIL = "fail"


@dataclass(frozen=True)
class StepDecision:
    """The action and a one-line reason for the decision log."""

    action: Action
    reason: str


def decide(
    judgement: Judgement,
    *,
    is_last: bool,
    seconds_in_step: float,
    bake_seconds: float,
    step_candidate_requests: int,
    min_requests: int,
    evidence_deadline_seconds: float,
    when_thin: WhenThin = WhenThin.WAIT,
    next_step_full: bool = False,
) -> StepDecision:
    """Decide what the current traffic step does, given the judge's latest verdict."""
    if judgement.verdict is Verdict.FAIL:
        return StepDecision(Action.ROLLBACK, judgement.reason)
    if seconds_in_step < bake_seconds:
        return StepDecision(Action.WAIT, f"baking ({seconds_in_step:.0f}s of {bake_seconds:.0f}s)")
    enough = step_candidate_requests >= min_requests
    needs_pass = is_last or next_step_full
    if enough and not needs_pass:
        return StepDecision(
            Action.ADVANCE,
            f"baked {seconds_in_step:.0f}s with {step_candidate_requests:,} candidate requests "
            f"and no evidence of a regression ({judgement.reason})",
        )
    if enough and judgement.verdict is Verdict.PASS:
        return StepDecision(
            Action.ADVANCE, f"{'promote' if is_last else 'advance'}: {judgement.reason}"
        )
    if not enough:
        thin = f"{step_candidate_requests:,} of {min_requests:,} candidate requests in this step"
    else:
        thin = judgement.reason
    if seconds_in_step >= evidence_deadline_seconds:
        return StepDecision(
            Action.FAIL_NO_EVIDENCE,
            f"no decision within the {evidence_deadline_seconds:.0f}s evidence deadline: {thin}",
        )
    if when_thin is WhenThin.FAIL:
        return StepDecision(Action.FAIL_NO_EVIDENCE, f"evidence too thin after the bake: {thin}")
    if when_thin is WhenThin.TOP_UP:
        return StepDecision(Action.TOP_UP, f"topping up with golden-set traffic: {thin}")
    return StepDecision(Action.WAIT, f"waiting for more traffic: {thin}")
