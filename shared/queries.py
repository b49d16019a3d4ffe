"""Read models for the status API and CLI: services, traffic as the cluster reports it, rollouts, decisions."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from shared.errors import NotFound
from shared.model import DeadLetter, Decision, IgnoredEvent, Replay, Rollout
from shared.serving import ServingProvider
from shared.store import Store


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def rollout_summary(rollout: Rollout) -> dict[str, Any]:
    """The fields status shows for a rollout."""
    return {
        "id": rollout.id,
        "service": rollout.service,
        "kind": rollout.kind,
        "phase": rollout.phase.value,
        "image": rollout.image_ref,
        "digest": rollout.digest,
        "revision": rollout.revision,
        "stable_revision": rollout.stable_revision,
        "deadline_at": _time(rollout.deadline_at),
        "approved_by": rollout.approved_by,
        "step": rollout.step_index,
        "steps": rollout.steps,
        "traffic_percent": rollout.traffic_percent,
        "reason": rollout.reason,
        "started_at": _time(rollout.created_at),
        "updated_at": _time(rollout.updated_at),
        "ended_at": _time(rollout.ended_at),
        # The running step's latest measured figures and verdict (None before any traffic step).
        "analysis": rollout.analysis.get("last"),
    }


def decision_view(decision: Decision) -> dict[str, Any]:
    """A decision as JSON."""
    doc = decision.to_document()
    doc["at"] = _time(decision.at)
    return doc


def service_status(store: Store, serving: ServingProvider | None, name: str) -> dict[str, Any]:
    """`hekaton status NAME --json`: stable revision, live traffic, active and last rollout."""
    loaded = store.get_service(name)
    if loaded is None:
        raise NotFound(
            f"service {name!r} is not registered (register it with `hekaton register FILE`)"
        )
    record = loaded.value
    traffic: list[dict[str, Any]] = []
    ready: bool | None = None
    cluster_error = None
    if serving is not None:
        try:
            view = serving.get_service(record.namespace, name)
        except Exception as exc:  # status must answer even when the cluster does not
            view, cluster_error = None, f"cluster unavailable: {exc}"
        if view is not None:
            traffic = [t.as_dict() for t in view.traffic]
            ready = view.ready
    rollouts = store.list_rollouts(name, limit=10)
    active = next((r for r in rollouts if r.active), None)
    finished = next((r for r in rollouts if not r.active), None)
    return {
        "service": name,
        "namespace": record.namespace,
        "image_repository": record.repository,
        "stable_revision": record.stable_revision,
        "stable_image": record.stable_image,
        # Routed at 0 % and warm until then (a rollback to it is instant); None: none kept.
        "previous_revision": record.previous_revision,
        "previous_warm_until": _time(record.previous_warm_until),
        "traffic": traffic,
        "ready": ready,
        "cluster_error": cluster_error,
        "active_rollout": rollout_summary(active) if active else None,
        "last_rollout": rollout_summary(finished) if finished else None,
        "deleted_at": _time(record.deleted_at),
        "deleted_by": record.deleted_by,
        "updated_by": record.updated_by,
    }


def service_history(
    store: Store, name: str, limit: int = 20, after: str | None = None
) -> list[dict[str, Any]]:
    """`hekaton history NAME --json`: rollouts newest first, each with its decision log."""
    if store.get_service(name) is None:
        raise NotFound(f"service {name!r} is not registered")
    history = []
    for rollout in store.list_rollouts(name, limit=limit, after=after):
        entry = rollout_summary(rollout)
        entry["decisions"] = [decision_view(d) for d in store.decisions(rollout.id)]
        history.append(entry)
    return history


def rollout_detail(store: Store, rollout_id: str, after_seq: int = 0) -> dict[str, Any]:
    """One rollout with its decision log (the entries after `after_seq`)."""
    loaded = store.get_rollout(rollout_id)
    if loaded is None:
        raise NotFound(f"rollout {rollout_id!r} does not exist")
    entry = rollout_summary(loaded.value)
    entry["decisions"] = [decision_view(d) for d in store.decisions(rollout_id, after_seq)]
    return entry


def list_services(
    store: Store, limit: int | None = None, after: str | None = None
) -> list[dict[str, Any]]:
    """Registered services with their stable revision and active rollout id (a page of them)."""
    return [
        {
            "service": s.name,
            "namespace": s.namespace,
            "image_repository": s.repository,
            "stable_revision": s.stable_revision,
            "active_rollout_id": s.active_rollout_id,
            "deleted_at": _time(s.deleted_at),
        }
        for s in store.list_services(limit=limit, after=after)
    ]


def ignored_view(event: IgnoredEvent) -> dict[str, Any]:
    """An ignored message as JSON."""
    return {
        **event.to_document(),
        "id": event.id,
        "at": _time(event.at),
        "expires_at": _time(event.expires_at),
    }


def replay_view(replay: Replay) -> dict[str, Any]:
    """A dead letter's replay as JSON."""
    return {**asdict(replay), "at": replay.at.isoformat()}


def dead_letter_view(record: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON: its bounded excerpt, never the whole payload."""
    return {
        "id": record.id,
        "message_id": record.message_id,
        "source_subscription": record.source_subscription,
        "original_topic": record.original_topic,
        "attempts": record.attempts,
        "first_seen": record.first_seen.isoformat(),
        "last_seen": record.last_seen.isoformat(),
        "attributes": record.attributes,
        "excerpt": record.excerpt,
        "size": record.size,
        "replayable": record.data is not None and record.original_topic is not None,
        "published_at": record.published_at,
        "replay_of": record.replay_of,
        "replays": [replay_view(r) for r in record.replays],
        "replaying": (
            {"at": record.replay_claim.at.isoformat(), "principal": record.replay_claim.principal}
            if record.replay_claim
            else None
        ),
    }
