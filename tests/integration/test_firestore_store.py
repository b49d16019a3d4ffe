"""FirestoreStore against the real Firestore emulator: round trips, preconditions, atomicity, contention."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import PreconditionFailed
from shared.firestore_store import FirestoreStore
from shared.model import Decision, IgnoredEvent, Rollout, ServiceRecord
from shared.phases import Phase
from shared.store import MUST_NOT_EXIST, Change, Versioned
from tests.fakes import World, decision_trail, digest_of, iris_spec

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def service(
    name: str = "iris", image: str = "r.io/models/iris", **changes: object
) -> ServiceRecord:
    """A service record whose spec has a nested array (a batch of feature rows) in a smoke request."""
    spec = iris_spec(name=name, image=image)
    return ServiceRecord(name=name, spec=spec, registered_at=T0, updated_at=T0).evolve(**changes)


def rollout(rid: str = "iris-r1", *, service_name: str = "iris", **changes: object) -> Rollout:
    """A rollout with every optional field populated."""
    base = Rollout(
        id=rid,
        service=service_name,
        namespace="models",
        image="r.io/models/iris",
        digest=digest_of(rid),
        revision=f"{service_name}-{digest_of(rid)[7:19]}",
        phase=Phase.SHIFTING,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1),
        tag="v2",
        steps=[10, 50, 100],
        step_index=1,
        step_applied=True,
        traffic_percent=50,
        stable_revision="iris-old",
        due_at=T0 + timedelta(seconds=30),
        emitted_at=T0,
        ready_deadline_at=T0 + timedelta(minutes=5),
        pushed_at=T0 - timedelta(milliseconds=250),
        cause="push-1",
        seq=3,
    )
    return base.evolve(**changes)


def decision(seq: int, entry_id: str | None = None) -> Decision:
    """A log entry with raw values (including a nested array) and thresholds."""
    return Decision(
        id=entry_id or f"{seq:04d}-step_applied",
        seq=seq,
        at=T0 + timedelta(seconds=seq),
        phase_from="SHIFTING",
        phase_to="SHIFTING",
        outcome="step_applied",
        reason=f"entry {seq}",
        step_index=seq % 3,
        values={"percent": 10 * seq, "probabilities": [[0.9, 0.1], [0.2, 0.8]]},
        thresholds={"bake_seconds": 30.0},
        message_id=f"msg-{seq}",
    )


def test_service_round_trip_and_preconditions(store: FirestoreStore) -> None:
    """Create once, update only from the current version, set unconditionally with None."""
    record = service()
    store.put_service(record, MUST_NOT_EXIST)
    loaded = store.get_service("iris")
    assert loaded is not None and loaded.value == record and loaded.version is not None
    assert store.get_service("nope") is None
    with pytest.raises(PreconditionFailed):
        store.put_service(record, MUST_NOT_EXIST)

    updated = record.evolve(stable_revision="iris-abc", updated_at=T0 + timedelta(hours=1))
    store.put_service(updated, loaded.version)
    reloaded = store.get_service("iris")
    assert reloaded is not None and reloaded.value == updated
    assert reloaded.version != loaded.version
    with pytest.raises(PreconditionFailed):
        store.put_service(record, loaded.version)  # stale: someone updated since
    assert store.get_service("iris") == reloaded  # the stale write changed nothing

    store.put_service(record.evolve(stable_revision="forced"), None)
    forced = store.get_service("iris")
    assert forced is not None and forced.value.stable_revision == "forced"


def test_update_of_a_missing_document_fails_its_precondition(store: FirestoreStore) -> None:
    """A version precondition on a document that does not exist is a PreconditionFailed."""
    store.put_service(service(), MUST_NOT_EXIST)
    version = store.get_service("iris").version  # type: ignore[union-attr]
    with pytest.raises(PreconditionFailed):
        store.commit(Change(rollouts=[(rollout(), version)]))
    assert store.get_rollout("iris-r1") is None


def test_rollout_and_decisions_round_trip(store: FirestoreStore) -> None:
    """Every rollout field survives, and the log comes back ordered by seq, not by id."""
    original = rollout()
    store.commit(
        Change(
            rollouts=[(original, MUST_NOT_EXIST)],
            decisions=[("iris-r1", decision(2, "a-second")), ("iris-r1", decision(1, "b-first"))],
        )
    )
    loaded = store.get_rollout("iris-r1")
    assert loaded is not None and loaded.value == original
    assert store.get_rollout("nope") is None
    entries = store.decisions("iris-r1")
    assert [d.id for d in entries] == ["b-first", "a-second"]
    assert entries[0] == decision(1, "b-first")  # nested arrays and thresholds intact
    assert store.decisions("nope") == []


def test_commit_is_all_or_nothing(store: FirestoreStore) -> None:
    """One stale record fails the whole change: no rollout, service or decision is written."""
    store.put_service(service(), MUST_NOT_EXIST)
    store.commit(Change(rollouts=[(rollout(), MUST_NOT_EXIST)]))
    current_service = store.get_service("iris")
    current_rollout = store.get_rollout("iris-r1")
    assert current_service is not None and current_rollout is not None
    store.commit(Change(rollouts=[(rollout(seq=4), current_rollout.version)]))  # moves the rollout

    with pytest.raises(PreconditionFailed):
        store.commit(
            Change(
                rollouts=[(rollout(phase=Phase.PROMOTED, seq=5), current_rollout.version)],
                services=[
                    (current_service.value.evolve(stable_revision="x"), current_service.version)
                ],
                decisions=[("iris-r1", decision(5))],
            )
        )
    assert store.decisions("iris-r1") == []
    after_service = store.get_service("iris")
    assert after_service is not None and after_service.value.stable_revision is None
    after_rollout = store.get_rollout("iris-r1")
    assert after_rollout is not None and after_rollout.value.seq == 4


def test_must_not_exist_for_rollouts(store: FirestoreStore) -> None:
    """Creating a rollout twice fails the second time and writes none of its change."""
    store.commit(Change(rollouts=[(rollout(), MUST_NOT_EXIST)]))
    with pytest.raises(PreconditionFailed):
        store.commit(
            Change(
                rollouts=[(rollout(seq=9), MUST_NOT_EXIST)], decisions=[("iris-r1", decision(9))]
            )
        )
    assert store.get_rollout("iris-r1").value.seq == 3  # type: ignore[union-attr]
    assert store.decisions("iris-r1") == []


def test_contended_read_modify_write_loses_no_update(store: FirestoreStore) -> None:
    """8 threads x 5 increments of one rollout, each with its log entry, converge on 40 exactly."""
    threads_count, increments = 8, 5
    store.commit(Change(rollouts=[(rollout(seq=0), MUST_NOT_EXIST)]))
    conflicts = [0] * threads_count
    failures: list[BaseException] = []
    deadline = time.monotonic() + 20

    def worker(index: int) -> None:
        jitter = random.Random(index)
        try:
            done = 0
            while done < increments:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {index} still contending at the deadline")
                loaded = store.get_rollout("iris-r1")
                assert loaded is not None
                seq = loaded.value.seq + 1
                change = Change(
                    rollouts=[(loaded.value.evolve(seq=seq), loaded.version)],
                    decisions=[("iris-r1", decision(seq))],
                )
                try:
                    store.commit(change)
                except PreconditionFailed:
                    conflicts[index] += 1
                    time.sleep(jitter.uniform(0, 0.02))  # back off with jitter, then reload
                    continue
                done += 1
        except BaseException as exc:  # surfaced in the main thread
            failures.append(exc)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in workers)
    assert failures == []
    final = store.get_rollout("iris-r1")
    assert final is not None and final.value.seq == threads_count * increments
    # Exactly one log entry per successful increment: a conflicting commit wrote nothing.
    assert [d.seq for d in store.decisions("iris-r1")] == list(range(1, 41))
    assert sum(conflicts) > 0, "no write ever conflicted: the test did not exercise contention"


def test_list_rollouts_newest_first_per_service(store: FirestoreStore) -> None:
    """Only the service's rollouts, newest first, limited."""
    for offset, rid in enumerate(["a-1", "a-2", "a-3"]):
        store.commit(
            Change(
                rollouts=[
                    (
                        rollout(rid, service_name="a", created_at=T0 + timedelta(minutes=offset)),
                        MUST_NOT_EXIST,
                    )
                ]
            )
        )
    store.commit(Change(rollouts=[(rollout("b-1", service_name="b"), MUST_NOT_EXIST)]))
    assert [r.id for r in store.list_rollouts("a")] == ["a-3", "a-2", "a-1"]
    assert [r.id for r in store.list_rollouts("a", limit=2)] == ["a-3", "a-2"]
    assert [r.id for r in store.list_rollouts("b")] == ["b-1"]
    assert store.list_rollouts("c") == []


def test_active_rollouts_only_and_with_usable_versions(store: FirestoreStore) -> None:
    """Terminal rollouts are excluded; the returned version works as a precondition."""
    phases = {"r-deploying": Phase.DEPLOYING, "r-shifting": Phase.SHIFTING}
    phases |= {"r-promoted": Phase.PROMOTED, "r-failed": Phase.FAILED}
    for rid, phase in phases.items():
        store.commit(Change(rollouts=[(rollout(rid, phase=phase), MUST_NOT_EXIST)]))
    active = {loaded.value.id: loaded for loaded in store.active_rollouts()}
    assert set(active) == {"r-deploying", "r-shifting"}
    chosen: Versioned[Rollout] = active["r-shifting"]
    store.commit(Change(rollouts=[(chosen.value.evolve(phase=Phase.PROMOTED), chosen.version)]))
    assert {r.value.id for r in store.active_rollouts()} == {"r-deploying"}


def test_services_for_repository_and_list_services(store: FirestoreStore) -> None:
    """Services are found by the repository they follow; the list is sorted by name."""
    store.put_service(service("iris", "r.io/models/iris"), MUST_NOT_EXIST)
    store.put_service(service("iris-shadow", "r.io/models/iris"), MUST_NOT_EXIST)
    store.put_service(service("wine", "r.io/models/wine"), MUST_NOT_EXIST)
    found = store.services_for_repository("r.io/models/iris")
    assert sorted(s.value.name for s in found) == ["iris", "iris-shadow"]
    assert all(s.version is not None for s in found)
    assert store.services_for_repository("r.io/models/none") == []
    assert [s.name for s in store.list_services()] == ["iris", "iris-shadow", "wine"]


def test_services_changed_since_and_warm_until_are_time_range_queries(
    store: FirestoreStore,
) -> None:
    """The tick's two service queries: changed at or after a time; warm window ended by a time."""
    store.put_service(service("old", updated_at=T0 - timedelta(hours=1)), MUST_NOT_EXIST)
    store.put_service(
        service("edge", updated_at=T0, previous_warm_until=T0 + timedelta(seconds=60)),
        MUST_NOT_EXIST,
    )
    store.put_service(service("new", updated_at=T0 + timedelta(seconds=5)), MUST_NOT_EXIST)
    changed = [s.name for s in store.services_changed_since(T0)]
    assert changed == ["new", "edge"]  # newest first
    # Past the limit, the services changed longest ago are the ones left out.
    assert [s.name for s in store.services_changed_since(T0 - timedelta(days=1), limit=2)] == [
        "new",
        "edge",
    ]
    assert store.services_changed_since(T0 + timedelta(seconds=6)) == []
    assert store.services_warm_until(T0 + timedelta(seconds=59)) == []
    assert [s.name for s in store.services_warm_until(T0 + timedelta(seconds=60))] == ["edge"]


def test_record_ignored_is_idempotent_per_message(store: FirestoreStore) -> None:
    """The same message ignored twice by one function is one record; newest first."""
    first = IgnoredEvent("m-1", "ingest", "DELETE of r.io/x:v1", T0, "{}", "gcr")
    store.record_ignored(first)
    store.record_ignored(first)
    store.record_ignored(IgnoredEvent("m-1", "deploy", "not JSON", T0 + timedelta(seconds=1)))
    store.record_ignored(IgnoredEvent("m/2", "ingest", "slash in id", T0 + timedelta(seconds=2)))
    ignored = store.list_ignored()
    assert [(e.function, e.message_id) for e in ignored] == [
        ("ingest", "m/2"),
        ("deploy", "m-1"),
        ("ingest", "m-1"),
    ]
    assert ignored[2] == first
    assert len(store.list_ignored(limit=1)) == 1


def test_the_pipeline_runs_on_the_real_store(store: FirestoreStore) -> None:
    """v1 then v2, every message twice and shuffled, on Firestore: both PROMOTED with clean logs."""
    world = World.create(store=store)
    world.register()
    pipeline = world.pipeline(duplicate=True, rng=random.Random(7))
    world.push(pipeline, "v1")
    pipeline.run()
    world.clock.advance(30)
    world.push(pipeline, "v2")
    pipeline.run()

    v2, v1 = world.rollouts()
    assert (v1.phase, v2.phase) == (Phase.PROMOTED, Phase.PROMOTED)
    assert [t[1] for t in decision_trail(store.decisions(v2.id))] == [
        "created",
        "deployed",
        "ready",
        "validation_passed",
        "step_applied",
        "step_passed",
        "step_applied",
        "step_passed",
        "step_applied",
        "last_step_passed",
        "promoted",
    ]
    assert world.traffic() == {world.revision("v2"): 100}
    registered = store.get_service("iris")
    assert registered is not None and registered.value.stable_revision == world.revision("v2")
    # The stored spec (with its batch of feature rows) is what was registered.
    assert registered.value.spec["validation"]["requests"][0]["json"] == {
        "instances": [[5.1, 3.5, 1.4, 0.2]]
    }
    assert not pipeline.errors()


def test_usage_counts_documents_read_and_written(store: FirestoreStore) -> None:
    """The per-invocation usage the functions log counts each written document and each read."""
    from shared import metering

    with metering.invocation() as usage:
        store.commit(
            Change(
                rollouts=[(rollout(), MUST_NOT_EXIST)],
                decisions=[("iris-r1", decision(1, "a")), ("iris-r1", decision(2, "b"))],
            )
        )
        store.get_rollout("iris-r1")
        store.decisions("iris-r1")
    assert usage[metering.FIRESTORE_WRITES] == 4  # rollout, two entries, its notified marker
    assert usage[metering.FIRESTORE_READS] == 3  # one document, then a query returning two


def test_a_request_record_is_created_once_with_its_change(store: FirestoreStore) -> None:
    """A second change carrying the same request id fails as a whole: the request applies once."""
    from shared.model import RequestRecord

    store.put_service(service(), MUST_NOT_EXIST)
    loaded = store.get_service("iris")
    assert loaded is not None
    request = RequestRecord(
        id="a" * 40,
        key="projects/p/messages/1 ü",
        command="rollback",
        service="iris",
        at=T0,
        status="applied",
        principal="ann@example.com",
        reason="p99 alarm",
        rollout_id="iris-r1",
        result={"target_revision": "iris-old"},
    )
    first = Change(
        services=[(loaded.value.evolve(stable_revision="iris-old"), loaded.version)],
        requests=[request],
    )
    store.commit(first)
    assert store.get_request(request.id) == request

    again = store.get_service("iris")
    assert again is not None
    second = Change(
        services=[(again.value.evolve(stable_revision="iris-other"), again.version)],
        requests=[request],
    )
    with pytest.raises(PreconditionFailed):
        store.commit(second)
    after = store.get_service("iris")
    assert after is not None and after.value.stable_revision == "iris-old"
    assert store.get_request("b" * 40) is None


def test_pages_cursors_counts_and_decisions_after_a_sequence_number(store: FirestoreStore) -> None:
    """Every list pages by the id of its last item; /ignored's count is an aggregation."""
    for name in ("a-svc", "b-svc", "c-svc"):
        store.put_service(service(name, image=f"r.io/{name}"), MUST_NOT_EXIST)
    assert [s.name for s in store.list_services(limit=2)] == ["a-svc", "b-svc"]
    assert [s.name for s in store.list_services(limit=2, after="b-svc")] == ["c-svc"]

    for n in range(3):
        store.commit(
            Change(
                rollouts=[
                    (rollout(f"iris-r{n}", created_at=T0 + timedelta(seconds=n)), MUST_NOT_EXIST)
                ]
            )
        )
    first = store.list_rollouts("iris", limit=2)
    assert [r.id for r in first] == ["iris-r2", "iris-r1"]
    assert [r.id for r in store.list_rollouts("iris", limit=2, after="iris-r1")] == ["iris-r0"]
    assert store.list_rollouts("iris", limit=2, after="no-such") == []

    store.commit(Change(decisions=[("iris-r0", decision(seq)) for seq in (1, 2, 3)]))
    assert [d.seq for d in store.decisions("iris-r0", after_seq=1)] == [2, 3]

    for n in range(3):
        store.record_ignored(IgnoredEvent(f"m/{n}", "ingest", "why", T0 + timedelta(seconds=n)))
    page = store.list_ignored(limit=2)
    assert [e.message_id for e in page] == ["m/2", "m/1"]
    assert [e.message_id for e in store.list_ignored(limit=2, after=page[-1].id)] == ["m/0"]
    assert store.count_ignored() == 3


def test_notified_marker_commits_and_publishes_never_overwrite_each_other(
    store: FirestoreStore,
) -> None:
    """A commit raises committed_seq (behind), a notifier raises notified_seq with a precondition;
    a commit landing in between fails the notifier's write; `notifications_behind` finds laggards."""
    first = rollout(seq=2)
    store.commit(
        Change(
            rollouts=[(first, MUST_NOT_EXIST)],
            decisions=[(first.id, decision(1)), (first.id, decision(2))],
        )
    )
    marker = store.get_notified(first.id)
    assert marker is not None
    assert (marker.value.committed_seq, marker.value.notified_seq, marker.value.service) == (
        2,
        0,
        "iris",
    )
    assert marker.value.committed_at == T0 + timedelta(seconds=2)
    assert [m.value.rollout_id for m in store.notifications_behind()] == [first.id]

    # A commit lands after the notifier read the marker: the notifier's write is refused.
    loaded_rollout = store.get_rollout(first.id)
    assert loaded_rollout is not None
    store.commit(
        Change(
            rollouts=[(first.evolve(seq=3), loaded_rollout.version)],
            decisions=[(first.id, decision(3))],
        )
    )
    with pytest.raises(PreconditionFailed):
        store.commit(Change(notified=[(marker.value.evolve(notified_seq=2), marker.version)]))

    fresh = store.get_notified(first.id)
    assert fresh is not None and fresh.value.committed_seq == 3 and fresh.value.notified_seq == 0
    store.commit(
        Change(notified=[(fresh.value.evolve(notified_seq=3, notified_at=T0), fresh.version)])
    )
    level = store.get_notified(first.id)
    assert level is not None
    assert (level.value.committed_seq, level.value.notified_seq, level.value.behind) == (
        3,
        3,
        False,
    )
    assert store.notifications_behind() == []
