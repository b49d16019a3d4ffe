"""Shift: set the step's weight, then judge the candidate at every wake-up until the step is decided.

A step's weight is set once (absolute weights, so a redelivery re-applies the same split). Then, every
`analysis.interval_seconds`, the candidate and the stable revision are measured over the same window
and the judge answers PASS, FAIL or CONTINUE; the step policy turns that into: advance, roll back, wait,
top up the evidence with the service's own requests, or give up at the step's evidence deadline.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shared.analysis.policy import Action
from shared.analysis.section import AnalysisSpec
from shared.phases import Outcome
from shared.serving import CANDIDATE_TAG
from shared.spec import ServiceSpec
from shared.steps.analyse import AnalysisState, Evaluation, evaluate, start_step
from shared.steps.engine import Plan, StepContext, apply_traffic, end_badly, later
from shared.topup import TopUpRequest, send_top_up


def act(ctx: StepContext) -> Plan | None:
    """Apply steps[i] (absolute weights), or, when due, evaluate the step and act on the verdict."""
    rollout, spec, now = ctx.rollout, ctx.spec, ctx.now
    analysis = spec.analysis if spec else AnalysisSpec(enabled=False)
    bake = spec.bake_seconds if spec else 0.0
    percent = rollout.steps[rollout.step_index]
    if not rollout.step_applied:
        first_check = analysis.interval_seconds if analysis.enabled else bake
        how = (
            f"judged every {analysis.interval_seconds:g}s against {rollout.stable_revision}"
            if analysis.enabled
            else "analysis disabled in the spec: judged on bake time alone"
        )
        applied, decision = ctx.transition(
            Outcome.STEP_APPLIED,
            reason=f"candidate {rollout.revision} now takes {percent}% of traffic; "
            f"baking {bake:g}s, {how}",
            values={"percent": percent, "stable_revision": rollout.stable_revision},
            thresholds={"bake_seconds": bake},
            traffic_percent=percent,
            step_applied=True,
            due_at=later(now, first_check),
            analysis=start_step(rollout, now).to_dict(),
        )
        touched = apply_traffic(ctx.deps, applied)
        return Plan(applied, decision, touched_traffic=touched)
    if rollout.due_at is not None and rollout.due_at > now:
        return None  # an early duplicate: the scheduled evaluation is still to come
    if not analysis.enabled:
        return _advance(ctx, "judged on bake time only: analysis is disabled in the spec", {}, {})
    evaluation = evaluate(ctx, analysis)
    if evaluation.action is Action.ADVANCE:
        return _advance(
            ctx,
            evaluation.reason,
            evaluation.values,
            evaluation.thresholds,
            analysis=evaluation.state.to_dict(),
        )
    if evaluation.action in (Action.ROLLBACK, Action.FAIL_NO_EVIDENCE):
        return end_badly(
            ctx,
            Outcome.ANALYSIS_FAILED,
            evaluation.reason,
            values=evaluation.values,
            thresholds=evaluation.thresholds,
            analysis=evaluation.state.to_dict(),
        )
    state = evaluation.state
    if evaluation.action is Action.TOP_UP:
        state = _top_up(ctx, analysis, evaluation)
    waiting = rollout.evolve(
        analysis=state.to_dict(), due_at=later(now, analysis.interval_seconds), updated_at=now
    )
    return Plan(waiting)


def _advance(
    ctx: StepContext,
    verdict: str,
    values: dict[str, Any],
    thresholds: dict[str, Any],
    **updates: Any,
) -> Plan:
    rollout = ctx.rollout
    percent = rollout.steps[rollout.step_index]
    if rollout.step_index + 1 < len(rollout.steps):
        nxt = rollout.steps[rollout.step_index + 1]
        advanced, decision = ctx.transition(
            Outcome.STEP_PASSED,
            reason=f"step {percent}% passed: {verdict}; next {nxt}%",
            values={"percent": percent, **values},
            thresholds=thresholds,
            step_index=rollout.step_index + 1,
            step_applied=False,
            **updates,
        )
    else:
        advanced, decision = ctx.transition(
            Outcome.LAST_STEP_PASSED,
            reason=f"last step {percent}% passed: {verdict}; promoting",
            values={"percent": percent, **values},
            thresholds=thresholds,
            **updates,
        )
    return Plan(advanced, decision)


def _top_up(ctx: StepContext, analysis: AnalysisSpec, evaluation: Evaluation) -> AnalysisState:
    """Send the service's own requests to the candidate so the next evaluation has more evidence."""
    rollout, spec = ctx.rollout, ctx.spec
    view = ctx.deps.serving.get_service(rollout.namespace, rollout.service)
    url = next(
        (
            t.url
            for t in (view.traffic if view else [])
            if t.tag == CANDIDATE_TAG and t.revision == rollout.revision and t.url
        ),
        None,
    )
    if url is None or spec is None:
        # Nothing to send to: say so in the live figures and look again at the next wake-up
        # (the step's evidence deadline still bounds the wait).
        problem = f"no '{CANDIDATE_TAG}' tag URL for {rollout.revision} to top up"
        return replace(evaluation.state, last={**(evaluation.state.last or {}), "problem": problem})
    requests = _top_up_requests(spec)
    report = send_top_up(
        ctx.deps.http,
        url,
        requests,
        analysis.top_up_requests,
        ingress_url=ctx.deps.settings.ingress_url,
        timeout=spec.validation.timeout_seconds,
        offset=evaluation.state.top_up_sent,
        extra_headers=ctx.deps.model_tokens.headers(spec.auth),
    )
    last = {**(evaluation.state.last or {}), "top_up": report.as_dict()}
    return replace(
        evaluation.state, top_up_sent=evaluation.state.top_up_sent + report.sent, last=last
    )


def _top_up_requests(spec: ServiceSpec) -> list[TopUpRequest]:
    """The golden set's requests (user-like by construction), else the successful smoke requests."""
    golden = spec.validation.golden
    if golden is not None and golden.requests:
        return [
            TopUpRequest(r.method or golden.method, r.path or golden.path, r.json_body, r.headers)
            for r in golden.selected()
        ]
    return [
        TopUpRequest(r.method, r.path, r.json_body, dict(r.headers))
        for r in spec.validation.requests
        # Only requests a healthy model answers successfully, and small ones: evidence, not stress.
        if r.expect.status < 400 and r.repeat is None
    ]
