"""Registering a service spec (what `hekaton register` does), keeping what hekaton already knows."""

from __future__ import annotations

from datetime import datetime

from shared.model import ServiceRecord
from shared.retrying import retry_on_conflict
from shared.spec import ServiceSpec
from shared.store import MUST_NOT_EXIST, Store


def register(
    store: Store, spec: ServiceSpec, now: datetime, *, by: str | None = None
) -> tuple[ServiceRecord, bool]:
    """Create or update the service record (`by`: who asked); returns (record, created)."""

    def attempt() -> tuple[ServiceRecord, bool]:
        existing = store.get_service(spec.name)
        if existing is None:
            record = ServiceRecord(
                name=spec.name,
                spec=spec.to_document(),
                registered_at=now,
                updated_at=now,
                updated_by=by,
            )
            store.put_service(record, MUST_NOT_EXIST)  # PreconditionFailed: re-read, decide again
            return record, True
        record = existing.value.evolve(spec=spec.to_document(), updated_at=now, updated_by=by)
        if record.deleted_at is not None:
            # Registered again after a delete: its Knative Service is gone, so nothing is stable.
            record = record.evolve(
                deleted_at=None,
                deleted_by=None,
                stable_revision=None,
                stable_image=None,
                stable_digest=None,
                active_rollout_id=None,
            )
        store.put_service(record, existing.version)
        return record, False

    return retry_on_conflict(attempt, what=f"registering {spec.name}")
