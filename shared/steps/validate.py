"""Validate: smoke requests against the candidate's tag URL before any user traffic reaches it."""

from __future__ import annotations

from shared.errors import RetryableError
from shared.phases import Outcome
from shared.serving import CANDIDATE_TAG
from shared.steps.engine import Plan, StepContext
from shared.steps.failing import end_badly
from shared.validation import run_checks


def act(ctx: StepContext) -> Plan:
    """Run the checks; all pass -> shift (or promote a first deploy); any fails -> FAILED."""
    deps, rollout, spec = ctx.deps, ctx.rollout, ctx.spec
    if ctx.service is None or spec is None:
        return end_badly(ctx, Outcome.VALIDATION_FAILED, "service is no longer registered")
    view = deps.serving.get_service(rollout.namespace, rollout.service)
    url = next(
        (
            t.url
            for t in (view.traffic if view else [])
            if t.tag == CANDIDATE_TAG and t.revision == rollout.revision
        ),
        None,
    )
    if not url:
        raise RetryableError(
            f"no '{CANDIDATE_TAG}' tag URL for {rollout.revision} in the route yet; will retry"
        )
    results = run_checks(
        deps.http,
        url,
        spec.validation.requests,
        ingress_url=deps.settings.ingress_url,
        timeout=spec.validation.timeout_seconds,
    )
    values = {"url": url, "checks": [r.as_dict() for r in results]}
    thresholds = {
        r.name: r.expect.model_dump(mode="json", by_alias=True, exclude_none=True)
        for r in spec.validation.requests
    }
    failed = [r for r in results if not r.passed]
    if failed:
        reason = "validation failed: " + "; ".join(
            f"{r.name}: {', '.join(r.problems)}" for r in failed
        )
        return end_badly(
            ctx, Outcome.VALIDATION_FAILED, reason, values=values, thresholds=thresholds
        )
    summary = (
        f"{len(results)} smoke request(s) passed" if results else "no smoke requests configured"
    )
    if rollout.stable_revision is None:
        passed, decision = ctx.transition(
            Outcome.FIRST_DEPLOY_VALIDATED,
            reason=f"{summary}; first deploy goes straight to 100%",
            values=values,
            thresholds=thresholds,
        )
    else:
        passed, decision = ctx.transition(
            Outcome.VALIDATION_PASSED,
            reason=f"{summary}; starting traffic steps {rollout.steps}",
            values=values,
            thresholds=thresholds,
            step_index=0,
            step_applied=False,
        )
    return Plan(passed, decision)
