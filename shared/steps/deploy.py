"""Deploy: make the candidate a Knative revision with a deterministic name and no user traffic."""

from __future__ import annotations

from shared.errors import PermanentError
from shared.logs import get_logger
from shared.model import Rollout
from shared.phases import Outcome
from shared.scaling_spec import env_vars
from shared.serving import RevisionTemplate
from shared.spec import ServiceSpec
from shared.steps.engine import Plan, StepContext, end_badly, later
from shared.steps.traffic import desired_traffic

log = get_logger("deploy")

PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline"


def revision_template(spec: ServiceSpec, rollout: Rollout) -> RevisionTemplate:
    """The template for the candidate: image by digest, BYO name, deadline and autoscaling
    annotations, resources (GPUs with their node selector and toleration), env (secret refs)."""
    annotations = {PROGRESS_DEADLINE: f"{int(spec.readiness_deadline_seconds)}s"}
    annotations.update(spec.scaling.annotations())
    return RevisionTemplate(
        name=rollout.revision,
        image=f"{rollout.image}@{rollout.digest}",
        env=env_vars(spec.env),
        annotations=annotations,
        resources=spec.resources.container(),
        node_selector=spec.resources.node_selector(),
        tolerations=spec.resources.tolerations(),
        container_concurrency=spec.scaling.container_concurrency,
    )


def act(ctx: StepContext) -> Plan:
    """Create the revision (or reuse it if it exists) and pin traffic by revision name."""
    deps, rollout, spec = ctx.deps, ctx.rollout, ctx.spec
    if ctx.service is None or spec is None:
        return end_badly(ctx, Outcome.DEPLOY_FAILED, "service is no longer registered")
    stable = rollout.stable_revision
    if stable is None:
        # Adopt what serves today if the Service predates hekaton (or our stable record was lost).
        view = deps.serving.get_service(rollout.namespace, rollout.service)
        stable = view.serving_revision() if view else None
        if stable == rollout.revision:
            stable = None
    staged = rollout.evolve(stable_revision=stable, traffic_percent=0)
    try:
        # Endpoint auth first, so the new revision never serves without it.
        deps.policies.apply(rollout.namespace, rollout.service, spec.auth)
        if deps.serving.revision_exists(rollout.namespace, rollout.revision):
            # Same digest as an earlier revision: Knative refuses a BYO name twice, reuse the revision.
            deps.serving.set_traffic(rollout.namespace, rollout.service, desired_traffic(staged))
            # Not in the reason: a redelivered deploy may find the revision its twin created, and
            # the decision must read the same whichever delivery commits it.
            log.info(
                "reused existing revision",
                extra={
                    "rollout": rollout.id,
                    "service": rollout.service,
                    "revision": rollout.revision,
                },
            )
        else:
            deps.serving.deploy(
                rollout.namespace,
                rollout.service,
                revision_template(spec, staged),
                desired_traffic(staged),
            )
    except PermanentError as exc:
        return end_badly(ctx, Outcome.DEPLOY_FAILED, str(exc))
    now = ctx.now
    deployed, decision = ctx.transition(
        Outcome.DEPLOYED,
        rollout=staged,
        reason=f"deployed revision {rollout.revision} for {rollout.image_short} with 0% of user traffic"
        if stable
        else f"deployed revision {rollout.revision} (first deploy: no stable revision to protect)",
        values={"revision": rollout.revision, "stable_revision": stable},
        thresholds={"readiness_deadline_seconds": spec.readiness_deadline_seconds},
        ready_deadline_at=later(now, spec.readiness_deadline_seconds),
        traffic_percent=0 if stable else 100,
    )
    return Plan(deployed, decision, touched_traffic=True)
