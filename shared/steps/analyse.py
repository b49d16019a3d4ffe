"""One evaluation of a baking traffic step: measure both revisions, ask the judge, apply the step policy.

The shift step calls `evaluate` at every wake-up while a step bakes. Everything the next wake-up needs
(window start, the judge's running state, the candidate's count when the step began, the live
figures) lives in `AnalysisState`, stored on the rollout, so no function instance waits for anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.analysis.counts import ArmCounts
from shared.analysis.judge import JudgeState
from shared.analysis.judge import evaluate as judge_counts
from shared.analysis.policy import Action, WhenThin, decide
from shared.analysis.section import AnalysisSpec
from shared.errors import PermanentError, RetryableError
from shared.logs import get_logger
from shared.model import Rollout
from shared.steps.engine import StepContext

log = get_logger("analysis")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class AnalysisState:
    """The analysis' memory between wake-ups (JSON-compatible on the rollout document)."""

    window_start: datetime | None = None  # when the candidate first took user traffic
    step_started_at: datetime | None = None  # when the current step's weight was set
    judge: dict[str, Any] = field(default_factory=dict)  # the judge's running state
    top_up_sent: int = 0
    last: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The rollout's `analysis` field."""
        return {
            "window_start": _iso(self.window_start),
            "step_started_at": _iso(self.step_started_at),
            "judge": self.judge,
            "top_up_sent": self.top_up_sent,
            "last": self.last,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisState:
        """Inverse of to_dict ({} is the state before any traffic step)."""
        return cls(
            window_start=_time(data.get("window_start")),
            step_started_at=_time(data.get("step_started_at")),
            judge=dict(data.get("judge") or {}),
            top_up_sent=int(data.get("top_up_sent") or 0),
            last=data.get("last"),
        )


def start_step(rollout: Rollout, now: datetime) -> AnalysisState:
    """The state as a step's weight is set: the window opens on the first step and stays open."""
    state = AnalysisState.from_dict(rollout.analysis)
    return replace(state, window_start=state.window_start or now, step_started_at=now)


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation concluded, with the figures for the decision log and the live view."""

    action: Action
    reason: str
    state: AnalysisState
    values: dict[str, Any]
    thresholds: dict[str, Any]


def evaluate(ctx: StepContext, analysis: AnalysisSpec) -> Evaluation:
    """Measure candidate and stable over the window, judge, and decide what the step does now."""
    rollout, now = ctx.rollout, ctx.now
    state = AnalysisState.from_dict(rollout.analysis)
    window_start = state.window_start or now
    step_started = state.step_started_at or now
    elapsed = (now - step_started).total_seconds()
    bake = ctx.spec.bake_seconds if ctx.spec else 0.0
    percent = rollout.steps[rollout.step_index]
    criteria = analysis.criteria()
    thresholds: dict[str, Any] = {
        "confidence": analysis.confidence,
        "min_requests": analysis.min_requests,
        "bake_seconds": bake,
        "max_wait_seconds": analysis.max_wait_seconds,
        "on_thin_evidence": analysis.on_thin_evidence,
        "error_rate": analysis.error_rate.model_dump(),
        "latency": analysis.latency.model_dump(),
    }
    live = {"at": now.isoformat(), "step": rollout.step_index, "percent": percent}
    threshold_ms = analysis.latency.threshold_ms
    try:
        candidate = ctx.deps.metrics.measure(
            rollout.namespace, rollout.service, rollout.revision, window_start, now, threshold_ms
        )
        stable = (
            ctx.deps.metrics.measure(
                rollout.namespace,
                rollout.service,
                rollout.stable_revision,
                window_start,
                now,
                threshold_ms,
            )
            if rollout.stable_revision
            else None
        )
    except RetryableError as exc:
        problem = f"metrics unavailable: {exc}"
        log.error(
            "analysis could not measure %s: %s",
            rollout.id,
            exc,
            extra={"rollout": rollout.id, "service": rollout.service},
        )
        figures = {**(state.last or {}), **live, "verdict": "continue", "problem": problem}
        waited = replace(state, last=figures)
        if elapsed >= analysis.max_wait_seconds:
            return Evaluation(
                Action.FAIL_NO_EVIDENCE,
                f"step {percent}% not judged by its evidence deadline "
                f"({analysis.max_wait_seconds:g}s): {problem}",
                waited,
                {"problem": problem, "step_elapsed_seconds": round(elapsed, 3)},
                thresholds,
            )
        return Evaluation(Action.WAIT, problem, waited, {"problem": problem}, thresholds)
    except PermanentError as exc:
        problem = f"metrics query refused: {exc}"
        return Evaluation(
            Action.ROLLBACK,
            f"step {percent}% cannot be judged: {problem}",
            replace(state, last={**live, "verdict": "fail", "problem": problem}),
            {"problem": problem},
            thresholds,
        )
    judge_state, judgement = judge_counts(
        JudgeState.from_dict(state.judge),
        candidate.counts,
        stable.counts if stable else ArmCounts(),
        rollout.step_index,
        criteria,
    )
    step_requests = judge_state.step_candidate.requests
    last_step = rollout.step_index + 1 >= len(rollout.steps)
    decision = decide(
        judgement,
        is_last=last_step,
        next_step_full=not last_step and rollout.steps[rollout.step_index + 1] == 100,
        seconds_in_step=elapsed,
        bake_seconds=bake,
        step_candidate_requests=step_requests,
        min_requests=criteria.min_requests,
        evidence_deadline_seconds=analysis.max_wait_seconds,
        when_thin=WhenThin(analysis.on_thin_evidence),
    )
    figures = {
        **live,
        "verdict": judgement.verdict.value,
        "reason": judgement.reason,
        "candidate": candidate.counts.as_dict(),
        "stable": stable.counts.as_dict() if stable else None,
        "needed_requests": judgement.needed_requests,
        "step_requests": step_requests,
        "step_elapsed_seconds": round(elapsed, 3),
        "problem": None,
    }
    values = {
        "percent": percent,
        "window_start": window_start.isoformat(),
        "window_seconds": round((now - window_start).total_seconds(), 3),
        "candidate": candidate.counts.as_dict(),
        "stable": stable.counts.as_dict() if stable else None,
        "candidate_by_code": candidate.raw,
        "stable_by_code": stable.raw if stable else None,
        "step_requests": step_requests,
        "judgement": judgement.values(),
        "queries": [*candidate.queries, *(stable.queries if stable else [])],
        "top_up_sent": state.top_up_sent,
    }
    thresholds.update(judgement.thresholds())
    return Evaluation(
        decision.action,
        decision.reason,
        replace(state, judge=judge_state.as_dict(), last=figures),
        values,
        thresholds,
    )
