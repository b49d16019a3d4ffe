"""Operator rollback (topic `hekaton-rollback`): traffic returns, the rollout ends, bad requests are answered."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from events.pubsub import PUBSUB_EVENT_TYPE, PubSubMessage
from events.steps import ROLLBACK_TOPIC
from functions._runtime import handle_pubsub
from shared.model import Rollout, ServiceRecord
from shared.phases import Outcome, Phase
from shared.serving import STABLE_TAG, RevisionHealth, TrafficTarget
from shared.steps import rollback
from shared.steps.engine import StepReport
from shared.steps.ingest import revision_name
from shared.steps.traffic import desired_traffic
from tests.fakes import Pipeline, World, digest_of, pubsub_envelope, rfc3339


def rollback_event(
    body: dict[str, Any] | bytes, *, message_id: str, published: datetime
) -> CloudEvent:
    """An operator request as Eventarc delivers it: a messagePublished CloudEvent from the rollback topic."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    message = PubSubMessage(message_id=message_id, data=data, publish_time=rfc3339(published))
    attributes = {
        "type": PUBSUB_EVENT_TYPE,
        "source": f"//pubsub.googleapis.com/projects/hekaton-test/topics/{ROLLBACK_TOPIC}",
        "id": message_id,
        "specversion": "1.0",
    }
    envelope = pubsub_envelope(
        message, subscription="projects/hekaton-test/subscriptions/eventarc-rollback"
    )
    return CloudEvent(attributes, envelope)


def request_rollback(
    world: World, body: dict[str, Any] | bytes, *, message_id: str = "rb-1"
) -> Any:
    """Deliver one rollback request through the function runtime with the world's dependencies."""
    event = rollback_event(body, message_id=message_id, published=world.clock.now())
    return handle_pubsub(event, "rollback", rollback.handle, dependencies=world.deps)


def promote(world: World, pipeline: Pipeline, *tags: str) -> None:
    """Push each tag in turn and run it to PROMOTED."""
    for tag in tags:
        world.push(pipeline, tag)
        pipeline.run()
        assert world.only_rollout(digest_of(tag)).phase is Phase.PROMOTED
        world.clock.advance(30)


def setup(*tags: str) -> tuple[World, Pipeline]:
    """iris registered, with the given tags promoted in order."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    promote(world, pipeline, *tags)
    return world, pipeline


def service(world: World) -> ServiceRecord:
    """iris's service record."""
    loaded = world.store.get_service("iris")
    assert loaded is not None
    return loaded.value


def rollback_records(world: World) -> list[Rollout]:
    """Rollouts that record an operator rollback with nothing in flight."""
    return [r for r in world.rollouts() if r.kind == "rollback"]


def state(world: World) -> tuple[Any, ...]:
    """Everything a redelivery must leave unchanged."""
    rollouts = world.rollouts()
    return (
        world.traffic(),
        service(world),
        rollouts,
        [world.store.decisions(r.id) for r in rollouts],
        len(world.serving.traffic_writes),
    )


def rollout_of(world: World, tag: str) -> Rollout | None:
    """The newest rollout of image `tag`, if ingest has created one yet."""
    return next((r for r in world.rollouts() if r.digest == digest_of(tag)), None)


def phase_of(world: World, tag: str) -> Phase | None:
    """The phase of the newest rollout of `tag` (None before ingest created it)."""
    found = rollout_of(world, tag)
    return found.phase if found is not None else None


def reached(world: World, tag: str, percent: int) -> bool:
    """Whether the rollout of `tag` exists and last set the candidate's share to `percent`."""
    found = rollout_of(world, tag)
    return found is not None and found.traffic_percent == percent


def start_rollout_at_50(world: World, pipeline: Pipeline) -> Rollout:
    """Push v2 over stable v1 and stop right after its 50 % step was applied."""
    world.push(pipeline, "v2")
    pipeline.run(until=lambda: reached(world, "v2", 50))
    rollout = world.only_rollout(digest_of("v2"))
    assert rollout.phase is Phase.SHIFTING and rollout.active
    assert world.traffic() == {world.revision("v1"): 50, world.revision("v2"): 50}
    assert service(world).active_rollout_id == rollout.id
    return rollout


# --------------------------------------------------------------------------------------------
# A rollout in flight
# --------------------------------------------------------------------------------------------


def test_rollback_during_a_rollout_at_50_percent_ends_it_and_drops_its_queued_steps() -> None:
    """SHIFTING at 50 % → ROLLED_BACK with the operator's reason; stable takes 100 %; stragglers are stale."""
    world, pipeline = setup("v1")
    rollout = start_rollout_at_50(world, pipeline)
    # The next step's event is already queued; redeliver the 50 % step's event as well (a straggler).
    assert pipeline.queue, "expected the rollout's next step to be in flight"
    pipeline.enqueue(pipeline.deliveries[-1].message)
    in_flight = len(pipeline.queue)

    report = request_rollback(
        world,
        {"service": "iris", "reason": "p99 alarm", "requested_by": "ann"},
        message_id="rb-50",
    )

    assert isinstance(report, rollback.RollbackReport)
    assert (report.rollout_id, report.target_revision, report.ended_active) == (
        rollout.id,
        world.revision("v1"),
        True,
    )
    ended = world.only_rollout(digest_of("v2"))
    assert ended.phase is Phase.ROLLED_BACK and not ended.active
    assert ended.traffic_percent == 0 and ended.ended_at == world.clock.now()
    assert ended.reason is not None
    for part in ("p99 alarm", "ann", "rb-50", world.revision("v1")):
        assert part in ended.reason
    last = world.store.decisions(rollout.id)[-1]
    assert (last.outcome, last.phase_from, last.phase_to) == (
        Outcome.ROLLBACK_REQUESTED.value,
        Phase.SHIFTING.value,
        Phase.ROLLED_BACK.value,
    )
    assert last.message_id == "rb-50" and last.reason == ended.reason
    assert last.values["traffic_percent_before"] == 50
    assert last.values["target_revision"] == world.revision("v1")
    assert world.traffic() == {world.revision("v1"): 100}
    record = service(world)
    assert record.active_rollout_id is None
    assert record.stable_revision == world.revision("v1")
    assert record.stable_digest == digest_of("v1")  # v1 stayed stable: its image is still known
    assert rollback_records(world) == []  # ending the rollout is the record; no second one

    writes = len(world.serving.traffic_writes)
    decisions = world.store.decisions(rollout.id)
    delivered = len(pipeline.deliveries)
    pipeline.run()
    after = pipeline.deliveries[delivered:]
    assert len(after) == in_flight
    for delivery in after:
        assert isinstance(delivery.result, StepReport), delivery
        assert delivery.result.status == "stale"
        assert "already ended ROLLED_BACK" in delivery.result.detail
    assert len(world.serving.traffic_writes) == writes
    assert world.traffic() == {world.revision("v1"): 100}
    assert world.store.decisions(rollout.id) == decisions
    assert world.store.active_rollouts() == []
    assert not pipeline.errors()
    assert world.store.list_ignored() == []


def test_rollback_during_a_rollout_to_a_named_older_revision() -> None:
    """A named target overrides the stable one; the service's stable revision follows it."""
    world, pipeline = setup("v1", "v2")
    world.push(pipeline, "v3")
    pipeline.run(until=lambda: reached(world, "v3", 10))

    report = request_rollback(world, {"service": "iris", "revision": world.revision("v1")})

    assert report.ended_active and report.target_revision == world.revision("v1")
    ended = world.only_rollout(digest_of("v3"))
    assert ended.phase is Phase.ROLLED_BACK and ended.stable_revision == world.revision("v1")
    assert world.traffic() == {world.revision("v1"): 100}
    record = service(world)
    assert (record.stable_revision, record.active_rollout_id) == (world.revision("v1"), None)
    pipeline.run()
    assert world.traffic() == {world.revision("v1"): 100}


# --------------------------------------------------------------------------------------------
# Nothing in flight
# --------------------------------------------------------------------------------------------


def test_rollback_with_nothing_in_flight_returns_to_the_previous_stable_revision() -> None:
    """v1 then v2 promoted: a bare rollback routes v1 100 %, makes it stable, and leaves a record."""
    world, _pipeline = setup("v1", "v2")
    assert world.traffic() == {world.revision("v2"): 100}

    report = request_rollback(
        world, {"service": "iris", "requested_by": "bob"}, message_id="rb-idle"
    )

    assert world.traffic() == {world.revision("v1"): 100}
    record = service(world)
    assert record.stable_revision == world.revision("v1")
    assert record.active_rollout_id is None
    assert record.stable_digest == digest_of("v1")  # the image of the revision now serving
    assert record.stable_image is not None and record.stable_image.endswith(
        f":v1@{digest_of('v1')}"
    )

    (entry,) = rollback_records(world)
    assert world.rollouts()[0] == entry  # newest in the history
    assert (report.rollout_id, report.ended_active) == (entry.id, False)
    assert entry.phase is Phase.ROLLED_BACK and entry.revision == world.revision("v1")
    assert (entry.kind, entry.digest, entry.tag) == ("rollback", digest_of("v1"), "v1")
    # The record wants the traffic the rollback set, like a rollout ended by a rollback does.
    assert desired_traffic(entry) == [TrafficTarget(world.revision("v1"), 100, STABLE_TAG)]
    assert entry.ended_at == world.clock.now()
    assert entry.reason is not None and "bob" in entry.reason and "rb-idle" in entry.reason
    (decision,) = world.store.decisions(entry.id)
    assert (decision.outcome, decision.phase_to, decision.message_id) == (
        Outcome.ROLLBACK_REQUESTED.value,
        Phase.ROLLED_BACK.value,
        "rb-idle",
    )
    assert decision.values == {
        "target_revision": world.revision("v1"),
        "previous_stable_revision": world.revision("v2"),
        # Who asked: Pub/Sub carries no verified identity, so the topic (and the body's claim).
        "requested_by": "topic hekaton-rollback for bob",
        "request_reason": "operator rollback",
        "request_key": "rb-idle",
    }
    # The promoted rollouts' history is untouched.
    assert world.only_rollout(digest_of("v2")).phase is Phase.PROMOTED
    assert world.store.active_rollouts() == []


@pytest.mark.parametrize("form", ["revision-name", "digest"])
def test_rollback_to_a_named_revision_or_digest(form: str) -> None:
    """`revision` may be a revision name or `sha256:...` (mapped to the deterministic revision name)."""
    world, _pipeline = setup("v1", "v2", "v3")
    target = world.revision("v1")
    named = target if form == "revision-name" else digest_of("v1")

    report = request_rollback(world, {"service": "iris", "revision": named})

    assert report.target_revision == target
    assert world.traffic() == {target: 100}
    assert service(world).stable_revision == target
    (entry,) = rollback_records(world)
    assert entry.revision == target
    assert world.store.decisions(entry.id)[0].values["previous_stable_revision"] == (
        world.revision("v3")
    )


# --------------------------------------------------------------------------------------------
# At-least-once delivery
# --------------------------------------------------------------------------------------------


def test_redelivered_rollback_with_nothing_in_flight_changes_nothing() -> None:
    """The same message twice: one record, one traffic change, same final state."""
    world, _pipeline = setup("v1", "v2")
    first = request_rollback(world, {"service": "iris"}, message_id="rb-dup")
    before = state(world)

    again = request_rollback(world, {"service": "iris"}, message_id="rb-dup")

    assert (again.rollout_id, again.target_revision) == (first.rollout_id, first.target_revision)
    assert state(world) == before
    assert len(rollback_records(world)) == 1


def test_redelivered_rollback_of_a_rollout_in_flight_changes_nothing() -> None:
    """After ending v2 at 50 %, a redelivery must not add a record nor roll back any further."""
    world, pipeline = setup("v0", "v1")
    start_rollout_at_50(world, pipeline)
    first = request_rollback(world, {"service": "iris"}, message_id="rb-dup")
    before = state(world)

    again = request_rollback(world, {"service": "iris"}, message_id="rb-dup")

    assert (again.rollout_id, again.target_revision) == (first.rollout_id, first.target_revision)
    assert state(world) == before
    assert world.traffic() == {world.revision("v1"): 100}  # not v0, v1's own predecessor
    assert rollback_records(world) == []


def test_late_redelivery_does_not_end_a_newer_rollout() -> None:
    """A rollback redelivered after a newer push started leaves that push's rollout alone."""
    world, pipeline = setup("v1", "v2")
    request_rollback(world, {"service": "iris"}, message_id="rb-late")
    world.clock.advance(30)
    world.push(pipeline, "v3")
    pipeline.run(until=lambda: reached(world, "v3", 10))
    before = state(world)

    request_rollback(world, {"service": "iris"}, message_id="rb-late")

    assert state(world) == before
    pipeline.run()
    assert world.only_rollout(digest_of("v3")).phase is Phase.PROMOTED


# --------------------------------------------------------------------------------------------
# Bad requests: recorded with a reason, acknowledged, nothing changed
# --------------------------------------------------------------------------------------------

BAD_REQUESTS = [
    pytest.param(
        {"service": "nope"}, ("v1", "v2"), "rollback names unknown service 'nope'", id="unknown"
    ),
    pytest.param(
        {"service": "iris", "revision": "iris-000000000000"},
        ("v1", "v2"),
        "revision iris-000000000000 never served iris as its stable revision",
        id="missing-revision",
    ),
    pytest.param(
        {"service": "iris", "revision": digest_of("never-pushed")},
        ("v1", "v2"),
        f"no rollout of iris deployed image {digest_of('never-pushed')}",
        id="missing-digest",
    ),
    pytest.param(
        b"\xff{service: iris", ("v1", "v2"), "rollback request is not JSON", id="not-json"
    ),
    pytest.param(
        {"revision": "iris-1"},
        ("v1", "v2"),
        "rollback request needs a non-empty string 'service'",
        id="missing-service",
    ),
    pytest.param(
        {"service": "iris", "revison": "iris-1"},
        ("v1", "v2"),
        "rollback request has unknown field 'revison'",
        id="misspelt-field",
    ),
    pytest.param(
        {"service": "iris"},
        (),
        "service iris has no stable revision to roll back to; name one with 'revision'",
        id="never-deployed",
    ),
    pytest.param(
        {"service": "iris"},
        ("v1",),
        f"service iris already serves {revision_name('iris', digest_of('v1'))}",
        id="nothing-earlier",
    ),
]


@pytest.mark.parametrize(("body", "tags", "reason"), BAD_REQUESTS)
def test_bad_rollback_request_is_recorded_and_acknowledged(
    body: dict[str, Any] | bytes, tags: tuple[str, ...], reason: str
) -> None:
    """Each bad request returns normally (acknowledged), is recorded once with its reason, changes nothing."""
    world, _pipeline = setup(*tags)
    before = state(world)

    assert request_rollback(world, body, message_id="rb-bad") is None
    assert request_rollback(world, body, message_id="rb-bad") is None  # a redelivery: same answer

    (ignored,) = world.store.list_ignored()
    assert reason in ignored.reason, ignored.reason
    assert (ignored.function, ignored.message_id, ignored.topic) == (
        "rollback",
        "rb-bad",
        ROLLBACK_TOPIC,
    )
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert ignored.excerpt == raw.decode(errors="replace")
    assert state(world) == before


def test_rollback_during_a_first_deploy_has_nowhere_to_go() -> None:
    """With no stable revision yet, the request is refused and the first rollout carries on."""
    world, pipeline = setup()
    world.push(pipeline, "v1")
    pipeline.run(until=lambda: phase_of(world, "v1") is Phase.VALIDATING)

    assert request_rollback(world, {"service": "iris"}) is None

    (ignored,) = world.store.list_ignored()
    assert "has no stable revision to roll back to" in ignored.reason
    pipeline.run()
    assert world.only_rollout(digest_of("v1")).phase is Phase.PROMOTED


# --------------------------------------------------------------------------------------------
# Life goes on
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_flight", [False, True], ids=["after-promotion", "mid-rollout"])
def test_a_newer_push_after_a_rollback_rolls_out_normally(in_flight: bool) -> None:
    """After rolling back from v2 to v1, pushing v3 goes through every step from v1 to PROMOTED."""
    world, pipeline = setup("v1") if in_flight else setup("v1", "v2")
    if in_flight:
        start_rollout_at_50(world, pipeline)
    request_rollback(world, {"service": "iris"})
    pipeline.run()
    assert world.traffic() == {world.revision("v1"): 100}
    world.clock.advance(30)
    writes = len(world.serving.traffic_writes)

    world.push(pipeline, "v3")
    pipeline.run()

    v3 = world.only_rollout(digest_of("v3"))
    assert v3.phase is Phase.PROMOTED and v3.stable_revision == world.revision("v1")
    outcomes = [d.outcome for d in world.store.decisions(v3.id)]
    assert outcomes[0] == Outcome.CREATED.value and outcomes[-1] == Outcome.PROMOTED.value
    # Traffic moved from v1 to v3 through every configured step.
    v1, v3_revision = world.revision("v1"), world.revision("v3")
    shares = [
        {t.revision: t.percent for t in change}
        for change in world.serving.traffic_changes("models", "iris")
    ]
    assert {v1: 90, v3_revision: 10} in shares and {v1: 50, v3_revision: 50} in shares
    assert len(world.serving.traffic_writes) > writes
    assert world.traffic() == {v3_revision: 100}
    record = service(world)
    assert (record.stable_revision, record.stable_digest) == (v3_revision, digest_of("v3"))
    assert record.active_rollout_id is None
    assert world.store.list_ignored() == []
    assert not pipeline.errors()


# --------------------------------------------------------------------------------------------
# Targets are checked (issue 7): this service's, served, Ready now; digests matched exactly
# --------------------------------------------------------------------------------------------


def _refused(world: World, body: dict[str, Any], message_id: str) -> str:
    before = state(world)
    assert request_rollback(world, body, message_id=message_id) is None
    assert state(world) == before, "a refused rollback changed something"
    found = [e for e in world.store.list_ignored() if e.message_id == message_id]
    assert len(found) == 1
    return found[0].reason


def test_rollback_to_a_revision_that_never_became_ready_is_refused() -> None:
    """v3 crashed on start: it exists in the cluster, but never served, so it is no target."""
    world, pipeline = setup("v1", "v2")
    world.serving.fail_image(digest_of("v3"), RevisionHealth(True, False, "ExitCode1"))
    world.push(pipeline, "v3")
    pipeline.run()
    assert world.only_rollout(digest_of("v3")).phase is Phase.FAILED
    assert world.serving.revision_exists("models", world.revision("v3"))

    reason = _refused(world, {"service": "iris", "revision": world.revision("v3")}, "rb-v3")
    assert f"revision {world.revision('v3')} never served iris" in reason
    reason = _refused(world, {"service": "iris", "revision": digest_of("v3")}, "rb-v3-digest")
    assert "never served" in reason
    # The service still works: the next push rolls out from v2.
    world.push(pipeline, "v4")
    pipeline.run()
    assert world.only_rollout(digest_of("v4")).phase is Phase.PROMOTED


def test_rollback_to_a_revision_of_another_service_is_refused() -> None:
    """iris-b's promoted revision is Ready and served, but not iris's."""
    world, pipeline = setup("v1", "v2")
    world.register(name="iris-b", image="registry.local/models/other")
    pipeline.push("registry.local/models/other", digest_of("b1"), "v1", message_id="push-b1")
    pipeline.run()
    other = revision_name("iris-b", digest_of("b1"))
    assert world.serving.revision_health("models", other).ready

    reason = _refused(world, {"service": "iris", "revision": other}, "rb-other")
    assert f"revision {other} never served iris" in reason


def test_rollback_to_a_served_revision_that_is_not_ready_now_is_refused() -> None:
    world, _pipeline = setup("v1", "v2")
    world.serving.set_health(
        "models", world.revision("v1"), RevisionHealth(True, False, "ProgressDeadlineExceeded")
    )
    reason = _refused(world, {"service": "iris"}, "rb-unready")
    assert f"revision {world.revision('v1')} is not Ready now (ProgressDeadlineExceeded)" in reason


def test_a_served_revision_relabelled_to_another_service_is_refused() -> None:
    """The cluster is asked now: a revision whose `serving.knative.dev/service` label differs is refused."""
    world, _pipeline = setup("v1", "v2")
    world.serving.revisions[("models", world.revision("v1"))].service = "someone-else"
    reason = _refused(world, {"service": "iris"}, "rb-label")
    assert "belongs to service someone-else, not iris" in reason


@pytest.mark.parametrize(
    "digest",
    [digest_of("v1")[:19], digest_of("v1")[:-1], digest_of("v1").upper(), "sha256:"],
    ids=["12-hex-prefix", "63-hex", "upper-case", "empty"],
)
def test_a_digest_target_is_matched_exactly_never_by_prefix(digest: str) -> None:
    world, _pipeline = setup("v1", "v2")
    reason = _refused(world, {"service": "iris", "revision": digest}, "rb-prefix")
    assert any(
        why in reason
        for why in ("is not a full image digest", "is not a revision name", "no rollout")
    )


def test_a_full_digest_target_names_the_revision_it_deployed() -> None:
    world, _pipeline = setup("v1", "v2")
    report = request_rollback(world, {"service": "iris", "revision": digest_of("v1")})
    assert isinstance(report, rollback.RollbackReport)
    assert report.target_revision == world.revision("v1")
    assert world.traffic() == {world.revision("v1"): 100}


# --------------------------------------------------------------------------------------------
# A request is applied once, whatever the redelivery (issue 7)
# --------------------------------------------------------------------------------------------


def test_a_rollback_redelivered_after_many_later_rollouts_is_not_applied_again() -> None:
    """The request record, not a scan of recent history, recognises the redelivery."""
    world, pipeline = setup("v1")
    start_rollout_at_50(world, pipeline)
    request_rollback(world, {"service": "iris", "reason": "p99"}, message_id="rb-once")
    pipeline.run()
    # Eleven more pushes promoted since: the rollback's rollout is far out of any "recent" window.
    promote(world, pipeline, *(f"v{n}" for n in range(3, 14)))
    before = state(world)

    report = request_rollback(world, {"service": "iris", "reason": "p99"}, message_id="rb-once")

    assert isinstance(report, rollback.RollbackReport)
    assert report.target_revision == world.revision("v1") and not report.ended_active
    assert state(world) == before
    assert world.traffic() == {world.revision("v13"): 100}


def test_racing_copies_of_one_rollback_apply_once() -> None:
    """Two deliveries of one message that both read before either commits: one applies, one finds it."""
    world, _pipeline = setup("v1", "v2")
    racing: list[Any] = []

    def second_copy_lands_first(change: Any) -> None:
        if change.requests and not racing:
            racing.append(None)  # the hook runs again inside the second copy's own commit
            racing[0] = request_rollback(world, {"service": "iris"}, message_id="rb-race")

    world.store.before_commit.append(second_copy_lands_first)
    report = request_rollback(world, {"service": "iris"}, message_id="rb-race")

    assert isinstance(report, rollback.RollbackReport) and isinstance(
        racing[0], rollback.RollbackReport
    )
    assert len(rollback_records(world)) == 1
    assert world.traffic() == {world.revision("v1"): 100}
    assert service(world).stable_revision == world.revision("v1")
