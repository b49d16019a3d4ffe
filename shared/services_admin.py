"""Creating, updating and deleting services for the control API (deploying an image through ingest)."""

from __future__ import annotations

import json
from typing import Any

from events.artifact_registry import RegistryAction, RegistryEvent, split_image
from events.errors import MalformedEvent
from events.pubsub import PubSubMessage
from shared.auth.own_access import lockout_problems
from shared.auth_spec import check_jwks, fetch_jwks
from shared.commands import CommandRequest, Refused
from shared.deps import Deps
from shared.registry import register
from shared.spec import ServiceSpec, SpecError, parse_spec
from shared.steps import ingest
from shared.steps.command_acts import rollout_acts
from shared.steps.commands import run_command


def put_service(
    deps: Deps, spec_doc: Any, image: str | None, *, principal: str, key: str
) -> dict[str, Any]:
    """Register (or update) a service from a spec; with `image` (by digest), deploy it now via ingest."""
    try:
        spec = parse_spec(spec_doc, origin="spec")
    except SpecError as exc:
        raise Refused("invalid", str(exc)) from None
    if spec.auth is not None:
        spec = _checked_auth(spec, deps)
    ref = None
    if image is not None:
        try:
            ref = split_image(image)
        except MalformedEvent as exc:
            raise Refused("invalid", exc.reason) from None
        if ref.digest is None:
            raise Refused("invalid", "'image' needs a digest (repo[:tag]@sha256:<64 hex>)")
        if ref.repository != spec.image:
            raise Refused(
                "invalid", f"'image' is from {ref.repository}, but {spec.name} follows {spec.image}"
            )
    record, created = register(deps.store, spec, deps.clock.now(), by=principal)
    answer: dict[str, Any] = {"service": record.name, "created": created}
    if ref is not None:
        if not spec.accepts_tag(ref.tag):
            raise Refused(
                "invalid",
                f"tag {ref.tag!r} does not match {spec.name}'s tag filter {spec.tag_filter!r}",
            )
        # The same path as a registry push: one rollout per (service, request key).
        message = PubSubMessage(
            message_id=f"api-{key}",
            data=json.dumps({"action": "INSERT", "image": image, "by": principal}).encode(),
            publish_time=None,
            topic="control",
        )
        report = ingest.IngestReport()
        event = RegistryEvent(action=RegistryAction.INSERT, image=ref)
        ingest.start(deps, message, event, spec, deps.clock.now(), report)
        answer["rollout_id"] = report.started[0] if report.started else None
        answer["ignored"] = report.ignored
    return answer


def _checked_auth(spec: ServiceSpec, deps: Deps) -> ServiceSpec:
    """Fetch the auth section's JWKS URIs (embedding file paths), check it admits hekaton's own
    token; refuse naming the field."""
    document, problems = check_jwks(spec.to_document(), fetch_jwks)
    assert spec.auth is not None
    problems += lockout_problems(spec.auth, deps.settings)
    if problems:
        raise Refused("invalid", "spec is invalid:\n" + "\n".join(f"  {p}" for p in problems))
    return parse_spec(document, origin="spec")


def delete_service(
    deps: Deps, name: str, *, principal: str, key: str, reason: str
) -> dict[str, Any]:
    """End the active rollout and mark the service deleted (once per key), then remove it from the
    cluster; a repeated request removes it again (idempotent), so a failed removal heals on retry."""
    request = CommandRequest(
        command="delete", principal=principal, key=key, origin="api", service=name, reason=reason
    )
    result = run_command(deps, request, rollout_acts())
    namespace = str(result.result.get("namespace") or "default")
    existed = deps.serving.delete_service(namespace, name)
    return {**result.as_dict(), "removed_from_cluster": existed}
