"""The typed responses of the read and control APIs (their JSON Schemas are in /openapi.json)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrafficEntry(_View):
    """One traffic target as the cluster reports it."""

    revision: str
    percent: int
    tag: str | None = None


class DecisionView(_View):
    """One decision-log entry: what was decided, on what evidence, caused by which message/request."""

    id: str
    seq: int
    at: str | None
    phase_from: str
    phase_to: str
    outcome: str
    reason: str
    step_index: int = 0
    values: dict[str, Any] = {}
    thresholds: dict[str, Any] = {}
    message_id: str = ""
    traffic_percent: int | None = None  # the candidate's share after it (None in older entries)


class RolloutSummary(_View):
    """A rollout's state."""

    id: str
    service: str
    kind: str
    phase: str
    image: str
    digest: str
    revision: str
    stable_revision: str | None
    step: int
    steps: list[int]
    traffic_percent: int
    reason: str | None
    started_at: str | None
    updated_at: str | None
    ended_at: str | None
    deadline_at: str | None
    approved_by: str | None
    analysis: dict[str, Any] | None


class RolloutDetail(RolloutSummary):
    """A rollout with (a window of) its decision log."""

    decisions: list[DecisionView]


class ServiceStatus(_View):
    """`GET /services/NAME`: stable revision, live traffic, active and last rollout."""

    service: str
    namespace: str
    image_repository: str
    stable_revision: str | None
    stable_image: str | None
    previous_revision: str | None = None  # kept warm at 0 % after the last promotion
    previous_warm_until: str | None = None
    traffic: list[TrafficEntry]
    ready: bool | None
    cluster_error: str | None
    active_rollout: RolloutSummary | None
    last_rollout: RolloutSummary | None
    deleted_at: str | None = None
    deleted_by: str | None = None
    updated_by: str | None = None  # who last registered the spec


class ServiceItem(_View):
    """One entry of `GET /services`."""

    service: str
    namespace: str
    image_repository: str
    stable_revision: str | None
    active_rollout_id: str | None
    deleted_at: str | None = None


class ServicePage(_View):
    """`GET /services`."""

    services: list[ServiceItem]
    next_cursor: str | None


class RolloutPage(_View):
    """`GET /services/NAME/rollouts`: newest first, each with its decisions."""

    service: str
    rollouts: list[RolloutDetail]
    next_cursor: str | None


class DecisionPage(_View):
    """`GET /rollouts/ID/decisions?after=SEQ`: the entries after a sequence number."""

    rollout_id: str
    phase: str
    decisions: list[DecisionView]
    last_seq: int  # pass as `after` next time


class IgnoredItem(_View):
    """A message acknowledged without action, and why."""

    id: str
    message_id: str
    function: str
    reason: str
    at: str | None
    excerpt: str = ""
    topic: str | None = None
    expires_at: str | None = None  # when Firestore's TTL policy may delete the record


class IgnoredPage(_View):
    """`GET /ignored`: newest first, with the total kept."""

    ignored: list[IgnoredItem]
    total: int
    next_cursor: str | None


class ReplayView(_View):
    """One replay of a dead letter: when, by whom, to which topic, the new message id."""

    at: str
    principal: str
    message_id: str
    topic: str
    forced: bool


class ReplayClaimView(_View):
    """A replay under way: by whom and since when."""

    at: str
    principal: str


class DeadLetterItem(_View):
    """A message Pub/Sub dead-lettered: from where, after how many attempts, and its replays."""

    id: str
    message_id: str
    source_subscription: str | None
    original_topic: str | None
    attempts: int | None
    first_seen: str
    last_seen: str
    attributes: dict[str, str]
    excerpt: str
    size: int
    replayable: bool
    published_at: str | None
    replay_of: str | None
    replays: list[ReplayView]
    replaying: ReplayClaimView | None


class DeadLetterPage(_View):
    """`GET /dead-letters`: newest first."""

    dead_letters: list[DeadLetterItem]
    next_cursor: str | None


class ReplayAnswer(_View):
    """`POST /dead-letters/ID/replay`: the replay just made, and the dead letter with its history."""

    replay: ReplayView
    dead_letter: DeadLetterItem


class CommandAnswer(_View):
    """What a control request did (`status`: applied now, or `repeated` for a known request key)."""

    command: str
    service: str
    status: str
    detail: str
    request_id: str
    rollout_id: str | None = None
    phase: str | None = None
    target_revision: str | None = None
    ended_active: bool | None = None
    namespace: str | None = None
    ended_rollout: str | None = None
    removed_from_cluster: bool | None = None


class ServiceAnswer(_View):
    """What `POST /services` did."""

    service: str
    created: bool
    rollout_id: str | None = None
    ignored: list[str] = []


class ErrorBody(_View):
    """Every 4xx/5xx answer."""

    error: str


def dump(model: type[_View], data: Any) -> Any:
    """Validate `data` as `model` and return its JSON form (a response never leaves untyped)."""
    return model.model_validate(data).model_dump(mode="json")
