"""Validate: smoke requests, then the golden set, against the candidate before any user traffic.

Each wake-up is one attempt. A cold candidate (no tag URL in the route yet, connection refused,
502/503/504) is tried again later within the spec's warm-up deadline, never by sleeping and never
past the deadline: then the rollout fails with the reason. A wrong answer fails at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.golden import replay_golden
from shared.phases import Outcome
from shared.serving import CANDIDATE_TAG, STABLE_TAG
from shared.spec import ServiceSpec
from shared.steps.engine import Plan, StepContext, apply_traffic, end_badly, later
from shared.validation import (
    Verdict,
    decide,
    retry_pause_seconds,
    run_checks,
    warmup_deadline,
)


def _tag_url(ctx: StepContext, tag: str, revision: str | None) -> str | None:
    view = ctx.deps.serving.get_service(ctx.rollout.namespace, ctx.rollout.service)
    return next(
        (
            t.url
            for t in (view.traffic if view else [])
            if t.tag == tag and t.revision == revision and t.url
        ),
        None,
    )


def act(ctx: StepContext) -> Plan | None:
    """Run one attempt: all pass -> golden set -> shift (or promote a first deploy); else fail or retry."""
    deps, rollout, spec, now = ctx.deps, ctx.rollout, ctx.spec, ctx.now
    if ctx.service is None or spec is None:
        return end_badly(ctx, Outcome.VALIDATION_FAILED, "service is no longer registered")
    if rollout.due_at is not None and rollout.due_at > now:
        return None  # an early duplicate: the scheduled attempt is still to come
    started = rollout.validation_started_at or now
    attempt = rollout.validation_attempts + 1
    validation = spec.validation
    url = _tag_url(ctx, CANDIDATE_TAG, rollout.revision)
    if not url:
        deadline = warmup_deadline(started, validation)
        problem = f"no '{CANDIDATE_TAG}' tag URL for {rollout.revision} in the route"
        if now >= deadline:
            return end_badly(
                ctx,
                Outcome.VALIDATION_FAILED,
                f"candidate not reachable within the {validation.warmup_seconds:g} s warm-up "
                f"({attempt} attempt{'s' if attempt != 1 else ''}): {problem}",
                values={"attempt": attempt, "problem": problem},
                thresholds={"warmup_seconds": validation.warmup_seconds},
            )
        # The route lost the candidate's tag (e.g. a racing write of the traffic block): put back
        # the absolute weights this rollout wants, then look again.
        apply_traffic(deps, rollout)
        pause = retry_pause_seconds(attempt, validation)
        return _retry_later(ctx, started, attempt, min(later(now, pause), deadline))
    results = run_checks(
        deps.http,
        url,
        validation.requests,
        ingress_url=deps.settings.ingress_url,
        timeout=validation.timeout_seconds,
        extra_headers=deps.model_tokens.headers(ctx.spec.auth if ctx.spec else None),
    )
    smoke = decide(results, started_at=started, now=now, attempt=attempt, validation=validation)
    values: dict[str, Any] = {
        "url": url,
        "checks": [r.as_dict() for r in results],
        **smoke.values(),
    }
    thresholds: dict[str, Any] = {
        r.name: r.expect.model_dump(mode="json", by_alias=True, exclude_none=True)
        for r in validation.requests
    }
    thresholds["warmup_seconds"] = validation.warmup_seconds
    if smoke.verdict is Verdict.RETRY_LATER:
        return _retry_later(ctx, started, attempt, smoke.retry_at or later(now, 1.0))
    if smoke.verdict is Verdict.FAILED:
        return end_badly(
            ctx, Outcome.VALIDATION_FAILED, smoke.reason, values=values, thresholds=thresholds
        )
    summary = smoke.reason
    golden = _golden(ctx, spec, url, values, thresholds)
    if golden is not None and not golden[0]:
        return end_badly(
            ctx, Outcome.VALIDATION_FAILED, golden[1], values=values, thresholds=thresholds
        )
    if golden is not None:
        summary += f"; {golden[1]}"
    if rollout.stable_revision is None:
        passed, decision = ctx.transition(
            Outcome.FIRST_DEPLOY_VALIDATED,
            reason=f"{summary}; first deploy goes straight to 100%",
            values=values,
            thresholds=thresholds,
            validation_attempts=attempt,
        )
    else:
        passed, decision = ctx.transition(
            Outcome.VALIDATION_PASSED,
            reason=f"{summary}; starting traffic steps {rollout.steps}",
            values=values,
            thresholds=thresholds,
            step_index=0,
            step_applied=False,
            validation_attempts=attempt,
        )
    return Plan(passed, decision)


def _retry_later(ctx: StepContext, started: datetime, attempt: int, when: datetime) -> Plan:
    """Come back for another attempt at `when` (no phase change, no log entry)."""
    return Plan(
        ctx.rollout.evolve(
            validation_started_at=started,
            validation_attempts=attempt,
            due_at=when,
            updated_at=ctx.now,
        )
    )


def _golden(
    ctx: StepContext,
    spec: ServiceSpec,
    candidate_url: str,
    values: dict[str, Any],
    thresholds: dict[str, Any],
) -> tuple[bool, str] | None:
    """Replay the golden set against stable and candidate: (passed, reason), None when not run."""
    golden = spec.validation.golden
    if golden is None:
        return None
    if ctx.rollout.stable_revision is None:
        values["golden"] = {"skipped": "first deploy: no stable revision to compare with"}
        return True, "golden set skipped (first deploy: no stable revision to compare with)"
    stable_url = _tag_url(ctx, STABLE_TAG, ctx.rollout.stable_revision)
    if stable_url is None:
        values["golden"] = {"skipped": "the stable revision has no tag URL"}
        return True, "golden set skipped (the stable revision has no tag URL)"
    result = replay_golden(
        ctx.deps.http,
        stable_url,
        candidate_url,
        golden,
        ingress_url=ctx.deps.settings.ingress_url,
        timeout=spec.validation.timeout_seconds,
        extra_headers=ctx.deps.model_tokens.headers(spec.auth),
    )
    values["golden"] = result.values()
    thresholds["golden"] = result.thresholds()
    return result.passed, result.reason
