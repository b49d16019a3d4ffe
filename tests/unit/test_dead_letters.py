"""Dead letters over fakes: one record per dead-lettered message, listed by the read API, replayed once."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest
from cloudevents.http import CloudEvent
from google.api_core import exceptions as google_errors

from cli.main import main
from events.pubsub import DEAD_LETTER_ID, ORIGINAL_PUBLISH_TIME, PUBSUB_EVENT_TYPE, PubSubMessage
from events.steps import DEAD_LETTER_TOPIC, STEP_TOPICS, StepType
from functions._runtime import handle_pubsub
from functions.control import public
from functions.dead_letter import record
from functions.manifest import FUNCTIONS, SERVICE_ACCOUNTS, topic_for_subscription
from shared.api import control
from shared.api.http import ApiRequest, dead_letter_ref
from shared.api.serve import serve
from shared.dead_letters import (
    CLAIM_SECONDS,
    MAX_EXCERPT,
    MAX_KEPT_DATA,
    REPLAY_OF,
    dead_letter_id,
    replay,
)
from shared.errors import RetryableError
from shared.model import ReplayClaim
from shared.phases import Phase
from shared.publisher import PubSubPublisher
from tests.fakes import REPOSITORY, World, digest_of, registry_message, rfc3339
from tests.tokens import Issuer

BODY = b'{"rollout_id": "r-1", "step": "deploy"}'
ORIGINAL = {"ce-type": "hekaton.step.deploy", "rollout": "r-1"}


def dead_letter_event(
    *,
    message_id: str = "dl-msg-1",
    data: bytes = BODY,
    subscription: str = "projects/hekaton-test/subscriptions/hekaton-deploy-push",
    attempts: int = 5,
    publish_time: str = "2026-12-01T20:00:00.123Z",
) -> CloudEvent:
    """A message forwarded to the dead-letter topic, as Pub/Sub delivers it to the recorder."""
    attributes = {
        **ORIGINAL,
        "CloudPubSubDeadLetterSourceSubscription": subscription,
        "CloudPubSubDeadLetterSourceSubscriptionProject": "hekaton-test",
        "CloudPubSubDeadLetterSourceDeliveryCount": str(attempts),
        "CloudPubSubDeadLetterSourceTopicPublishTime": publish_time,
    }
    envelope = {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": message_id,
            "attributes": attributes,
        },
        "subscription": "projects/hekaton-test/subscriptions/hekaton-dead-letter-push",
    }
    return CloudEvent(
        {
            "type": PUBSUB_EVENT_TYPE,
            "source": f"//pubsub.googleapis.com/projects/hekaton-test/topics/{DEAD_LETTER_TOPIC}",
            "id": message_id,
            "specversion": "1.0",
        },
        envelope,
    )


class Api:
    """Calls the read and control APIs as a principal."""

    def __init__(self, world: World, issuer: Issuer) -> None:
        self.world, self.issuer = world, issuer

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        request = ApiRequest(method, path, {}, self.issuer.headers("ann@hekaton.local"), data)
        response = serve(self.world.deps, request, control.routes, public)
        return response.status, json.loads(response.encoded())


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    """One signing key for the module (making an RSA key is the slow part of each test)."""
    return Issuer.create(tmp_path_factory.mktemp("issuer"))


@pytest.fixture
def api(issuer: Issuer) -> Api:
    return Api(World.create(**issuer.settings()), issuer)


def deliver(world: World, event: CloudEvent) -> None:
    handle_pubsub(event, "dead-letter", record, dependencies=world.deps)


def test_a_dead_letter_is_kept_with_its_origin_attempts_and_excerpt(api: Api) -> None:
    deliver(api.world, dead_letter_event())
    [kept] = api.world.store.list_dead_letters()
    assert kept.source_subscription == "hekaton-deploy-push"
    assert kept.original_topic == STEP_TOPICS[StepType.DEPLOY]
    assert kept.attempts == 5
    assert kept.excerpt == BODY.decode()
    assert kept.data == BODY
    assert kept.published_at == "2026-12-01T20:00:00.123Z"
    assert kept.attributes["rollout"] == "r-1"
    assert kept.id.startswith("dl-") and "/" not in kept.id


def test_redelivery_and_a_second_dead_lettering_make_one_record(api: Api) -> None:
    world = api.world
    deliver(world, dead_letter_event())
    world.clock.advance(30)
    deliver(world, dead_letter_event())  # the recorder's own redelivery
    world.clock.advance(30)
    deliver(world, dead_letter_event(message_id="dl-msg-2", attempts=6))  # dead-lettered twice
    [kept] = world.store.list_dead_letters()
    assert kept.last_seen - kept.first_seen == timedelta(seconds=60)
    assert kept.attempts == 6


def test_different_messages_make_different_records(api: Api) -> None:
    deliver(api.world, dead_letter_event())
    deliver(api.world, dead_letter_event(message_id="dl-msg-2", data=b'{"other": 1}'))
    assert len(api.world.store.list_dead_letters()) == 2


def test_a_huge_payload_is_kept_as_an_excerpt_and_refused_for_replay(api: Api) -> None:
    deliver(api.world, dead_letter_event(data=b"x" * (MAX_KEPT_DATA + 1)))
    [kept] = api.world.store.list_dead_letters()
    assert kept.data is None and kept.size == MAX_KEPT_DATA + 1
    assert len(kept.excerpt) <= MAX_EXCERPT + 1
    status, body = api.call("POST", f"/dead-letters/{kept.id}/replay")
    assert status == 409 and "too large" in body["error"]
    assert api.world.publisher.raw == []


def test_list_shows_what_from_where_and_attempts(api: Api) -> None:
    deliver(api.world, dead_letter_event())
    status, page = api.call("GET", "/dead-letters")
    assert status == 200
    [item] = page["dead_letters"]
    assert item["source_subscription"] == "hekaton-deploy-push"
    assert item["original_topic"] == "hekaton-deploy"
    assert item["attempts"] == 5 and item["replayable"] is True and item["replays"] == []
    assert item["replaying"] is None
    assert "data" not in item  # the excerpt, never the whole payload
    status, one = api.call("GET", f"/dead-letters/{item['id']}")
    assert status == 200 and one == item


def test_replay_republishes_data_and_original_attributes_and_records_it(api: Api) -> None:
    deliver(api.world, dead_letter_event())
    [kept] = api.world.store.list_dead_letters()
    status, answer = api.call("POST", f"/dead-letters/{kept.id}/replay")
    assert status == 200, answer
    [(topic, data, attributes, message_id)] = api.world.publisher.raw
    assert topic == "hekaton-deploy" and data == BODY
    assert attributes == {
        **ORIGINAL,
        REPLAY_OF: kept.id,
        ORIGINAL_PUBLISH_TIME: "2026-12-01T20:00:00.123Z",  # what orders it among pushes
    }
    assert answer["replay"]["message_id"] == message_id
    assert answer["replay"]["principal"] == "ann@hekaton.local"
    [replayed] = api.world.store.list_dead_letters()[0].replays
    assert replayed.message_id == message_id and not replayed.forced


def test_a_second_replay_is_refused_unless_forced(api: Api) -> None:
    deliver(api.world, dead_letter_event())
    [kept] = api.world.store.list_dead_letters()
    assert api.call("POST", f"/dead-letters/{kept.id}/replay")[0] == 200
    status, body = api.call("POST", f"/dead-letters/{kept.id}/replay")
    assert status == 409 and "replayed already" in body["error"] and "--force" in body["error"]
    assert len(api.world.publisher.raw) == 1
    status, answer = api.call("POST", f"/dead-letters/{kept.id}/replay", {"force": True})
    assert status == 200 and answer["replay"]["forced"] is True
    assert len(api.world.publisher.raw) == 2
    assert len(api.world.store.list_dead_letters()[0].replays) == 2


def test_two_replays_at_the_same_instant_publish_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(api.world, dead_letter_event())
    [kept] = api.world.store.list_dead_letters()
    publish = api.world.publisher.publish_raw
    inner: list[tuple[int, Any]] = []

    def publish_while_another_replays(
        topic: str, data: bytes, attributes: dict[str, str] | None = None, **kw: Any
    ) -> str:
        if not inner:  # the second operator's replay lands while the first one publishes
            inner.append(api.call("POST", f"/dead-letters/{kept.id}/replay", {"force": True}))
        return publish(topic, data, attributes, **kw)

    monkeypatch.setattr(api.world.publisher, "publish_raw", publish_while_another_replays)
    status, answer = api.call("POST", f"/dead-letters/{kept.id}/replay")

    assert status == 200, answer
    [(second_status, second_body)] = inner
    assert second_status == 409
    assert "is being replayed by ann@hekaton.local" in second_body["error"]
    assert len(api.world.publisher.raw) == 1  # even --force waits for the replay under way
    [record] = api.world.store.list_dead_letters()
    assert len(record.replays) == 1 and record.replay_claim is None


def test_a_failed_publish_releases_the_claim_and_a_dead_claim_lapses(api: Api) -> None:
    deliver(api.world, dead_letter_event())
    [kept] = api.world.store.list_dead_letters()
    api.world.publisher.fail_next(RetryableError("Pub/Sub unavailable"))
    status, body = api.call("POST", f"/dead-letters/{kept.id}/replay")
    assert status == 503, body
    [record] = api.world.store.list_dead_letters()
    assert record.replays == () and record.replay_claim is None

    # A replay that died between publishing and recording leaves its claim: it holds for
    # CLAIM_SECONDS, then another replay may go ahead.
    loaded = api.world.store.get_dead_letter(kept.id)
    assert loaded is not None
    claim = ReplayClaim(at=api.world.clock.now(), principal="bob@hekaton.local")
    api.world.store.put_dead_letter(
        dataclasses.replace(loaded.value, replay_claim=claim), loaded.version
    )
    status, body = api.call("GET", "/dead-letters")
    assert (
        status == 200 and body["dead_letters"][0]["replaying"]["principal"] == "bob@hekaton.local"
    )
    status, body = api.call("POST", f"/dead-letters/{kept.id}/replay")
    assert status == 409 and "being replayed by bob@hekaton.local" in body["error"]
    api.world.clock.advance(CLAIM_SECONDS + 1)
    status, answer = api.call("POST", f"/dead-letters/{kept.id}/replay")
    assert status == 200, answer
    assert len(api.world.publisher.raw) == 1
    assert api.world.store.list_dead_letters()[0].replay_claim is None


@pytest.mark.parametrize("ref", ["dl-nope", "..", "dl-a%2Fb", "__x__"])
def test_an_unknown_or_odd_id_is_refused_with_404(api: Api, ref: str) -> None:
    status, body = api.call("POST", f"/dead-letters/{ref}/replay")
    assert status == 404 and "dead letter" in body["error"]
    assert api.world.publisher.raw == []


def test_a_bad_force_value_names_the_field(api: Api) -> None:
    deliver(api.world, dead_letter_event())
    [kept] = api.world.store.list_dead_letters()
    status, body = api.call("POST", f"/dead-letters/{kept.id}/replay", {"force": "yes"})
    assert status == 422 and "'force'" in body["error"]


def test_a_letter_from_a_foreign_subscription_is_kept_but_not_replayable(api: Api) -> None:
    deliver(api.world, dead_letter_event(subscription="projects/p/subscriptions/someone-else"))
    [kept] = api.world.store.list_dead_letters()
    assert kept.original_topic is None
    status, body = api.call("POST", f"/dead-letters/{kept.id}/replay")
    assert status == 409 and "original topic is unknown" in body["error"]


def test_replay_needs_a_token(api: Api) -> None:
    deliver(api.world, dead_letter_event())
    [kept] = api.world.store.list_dead_letters()
    request = ApiRequest("POST", f"/dead-letters/{kept.id}/replay", {}, {}, b"")
    assert serve(api.world.deps, request, control.routes, public).status == 401
    assert api.world.publisher.raw == []


def test_every_dead_lettering_subscription_maps_back_to_its_topic() -> None:
    for function in FUNCTIONS:
        if not function.dead_letters:
            continue
        local = f"projects/p/subscriptions/hekaton-{function.name}-push"
        eventarc = (
            f"projects/p/subscriptions/eventarc-europe-west1-hekaton-{function.name}-123-sub-456"
        )
        assert topic_for_subscription(local) == function.trigger_topic
        assert topic_for_subscription(eventarc) == function.trigger_topic
    assert topic_for_subscription("projects/p/subscriptions/hekaton-dead-letter-push") is None
    assert topic_for_subscription(None) is None


def test_the_control_functions_account_may_publish_every_replay_to_its_topic() -> None:
    control_fn = next(f for f in FUNCTIONS if f.name == "control")
    account = next(sa for sa in SERVICE_ACCOUNTS if sa.key == control_fn.account)
    replayable = {f.trigger_topic for f in FUNCTIONS if f.dead_letters}
    assert {"gcr", "hekaton-tick", "hekaton-deploy"} <= replayable
    assert replayable <= set(account.publishes_to)


def test_a_publish_pubsub_refuses_is_a_503_saying_which_right_is_missing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(api.world, dead_letter_event())
    [kept] = api.world.store.list_dead_letters()
    publisher = PubSubPublisher.__new__(PubSubPublisher)
    publisher._project = "hekaton-test"

    class RefusingClient:
        def topic_path(self, project: str, topic: str) -> str:
            return f"projects/{project}/topics/{topic}"

        def publish(self, *args: Any, **kwargs: Any) -> Any:
            raise google_errors.PermissionDenied("User not authorized to perform this action.")

    publisher._client = RefusingClient()
    # The real publisher's raw path (its client refusing), in place of the recording fake's.
    monkeypatch.setattr(api.world.publisher, "publish_raw", publisher.publish_raw)
    status, body = api.call("POST", f"/dead-letters/{kept.id}/replay")
    assert status == 503, body
    assert "publish to topic hekaton-deploy of project hekaton-test failed" in body["error"]
    assert "needs roles/pubsub.publisher on hekaton-deploy" in body["error"]
    assert api.world.store.list_dead_letters()[0].replay_claim is None


def test_a_store_failure_while_recording_raises_so_pubsub_redelivers_the_dead_letter(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(dead_letter_id: str) -> None:
        raise RetryableError("Firestore read got no answer within 5.0s")

    monkeypatch.setattr(api.world.store, "get_dead_letter", unavailable)
    with pytest.raises(RetryableError):
        deliver(api.world, dead_letter_event())
    monkeypatch.undo()
    assert api.world.store.list_dead_letters() == []
    assert api.world.store.list_ignored() == []  # not bad input: it will come again


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["dlq", "replay"], "name a dead letter ID (see `hekaton dlq list`), or --all"),
        (["dlq", "replay", "dl-x", "--all"], "name a dead letter ID or --all, not both"),
    ],
)
def test_replay_needs_exactly_one_of_an_id_and_all(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["a/../b", "..", "dl-x/replay", "__x__", "dl x", "é", "abc"])
def test_a_malformed_id_is_refused_by_the_cli_before_any_call(
    bad: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEKATON_CONTROL_URL", raising=False)
    monkeypatch.setenv("HEKATON_STATE_DIR", "/nonexistent/hekaton-state")  # no stack to call
    assert main(["dlq", "replay", bad]) == 1
    err = capsys.readouterr().err
    assert f"refused: no dead letter {bad!r}: ids are 'dl-' then letters, digits" in err


@pytest.mark.parametrize("message_id", ["7", "a" * 100, "x/../y", "é" * 3, "b" * 101])
def test_every_id_the_store_makes_is_one_the_api_and_the_cli_take(message_id: str) -> None:
    """One rule: an id made from a long or unsafe message id still passes the API's path guard."""
    made = dead_letter_id(PubSubMessage(data=b"{}", message_id=message_id))
    assert DEAD_LETTER_ID.fullmatch(made)
    assert dead_letter_ref(made) == made
    assert (made == f"dl-{message_id}") == (message_id in ("7", "a" * 100))


def test_a_replayed_push_keeps_its_place_behind_a_newer_push() -> None:
    """v2's push dead-letters; v3 is pushed and promoted; replaying v2's push an hour later must
    not roll the older image out over the newer one (it is born SUPERSEDED, as a late delivery)."""
    world = World.create()
    world.register()
    pipeline = world.pipeline()
    world.push(pipeline, "v1")
    pipeline.run()
    v2 = registry_message(
        "m-v2",
        digest=f"{REPOSITORY}@{digest_of('v2')}",
        tag=f"{REPOSITORY}:v2",
        publish_time=world.clock.now(),
    )
    assert v2.publish_time is not None
    gave_up = dead_letter_event(
        data=v2.data,
        subscription="projects/hekaton-test/subscriptions/hekaton-ingest-push",
        publish_time=v2.publish_time,
    )
    deliver(world, gave_up)  # Pub/Sub gave up on v2's push (say, Firestore was down)
    world.clock.advance(10)
    world.push(pipeline, "v3")
    pipeline.run()
    assert world.traffic() == {world.revision("v3"): 100}

    world.clock.advance(3600)
    [kept] = world.store.list_dead_letters()
    replay(world.deps, kept.id, principal="ann@hekaton.local")
    [(topic, data, attributes, message_id)] = world.publisher.raw
    assert topic == "gcr" and attributes[ORIGINAL_PUBLISH_TIME] == v2.publish_time
    pipeline.enqueue(  # what Pub/Sub delivers: a new message, published now
        PubSubMessage(
            message_id=message_id,
            data=data,
            attributes=attributes,
            publish_time=rfc3339(world.clock.now()),
            topic=topic,
        )
    )
    pipeline.run()

    assert world.only_rollout(digest_of("v2")).phase is Phase.SUPERSEDED
    assert world.traffic() == {world.revision("v3"): 100}


def test_replay_all_meeting_an_outage_says_what_it_replayed_and_what_it_did_not(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli import dlq_commands
    from cli.api_client import Unavailable
    from cli.target import Target

    listed = [{"id": f"dl-{n}", "replays": []} for n in (1, 2, 3)]
    answers: list[Any] = [
        {"dead_letter": {"id": "dl-1"}, "replay": {"topic": "hekaton-deploy", "message_id": "7"}},
        Unavailable(503, "the control API could not answer (503): Firestore down"),
    ]

    def replay_one(dead_letter: str, force: bool) -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    monkeypatch.setattr(dlq_commands, "resolve", lambda: Target("p", "http://status"))
    monkeypatch.setattr(dlq_commands, "fetch_pages", lambda *_a: listed)
    monkeypatch.setattr(dlq_commands, "_replay_one", replay_one)

    assert main(["dlq", "replay", "--all"]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("replayed dl-1 to hekaton-deploy as message 7\n")
    assert "error: stopped after 1 of 3: the control API could not answer (503)" in err
    assert "not tried: dl-2, dl-3" in err
