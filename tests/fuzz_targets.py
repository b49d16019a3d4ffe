"""Every function entry point as a fuzz target: its Flask app (functions-framework's, in process),
a world of fakes behind it, and how one request ended (handled, recorded-and-acked, unhandled).

Shared by the property tests and `bench/fuzz.py`.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import functions_framework
from flask import got_request_exception
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from events.steps import (
    DEAD_LETTER_TOPIC,
    REGISTRY_TOPIC,
    ROLLBACK_TOPIC,
    STEP_TOPICS,
    TICK_TOPIC,
    StepType,
)
from events.transitions import EVENTS_TOPIC
from functions import _runtime
from functions.manifest import FUNCTIONS, FunctionDef
from shared.ignoring import MAX_EXCERPT, MAX_ID, MAX_REASON
from shared.model import IgnoredEvent
from tests import fuzz_inputs as inputs
from tests.fakes import REPOSITORY, World, pubsub_envelope, registry_message
from tests.fuzz_inputs import Context, Delivery

ROOT = Path(__file__).resolve().parent.parent
SEED_PUSH = "fuzz-seed-push"
# The stored size of one ignore record can be no more than its bounded fields plus the fixed ones.
MAX_RECORD_BYTES = 4 * (MAX_REASON + MAX_EXCERPT + MAX_ID) + 1024

HANDLED, RECORDED, UNHANDLED = "handled", "recorded", "unhandled"


def share(examples: int) -> Any:
    """Hypothesis settings for a seeded share of the bench's inputs: generation only, no database."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def payloads_for(topic: str, ctx: Context) -> st.SearchStrategy[bytes]:
    """The message bodies a function triggered by `topic` is fuzzed with."""
    steps = {t: s for s, t in STEP_TOPICS.items()}
    if topic == REGISTRY_TOPIC:
        return inputs.registry_bodies(ctx)
    if topic in steps:
        return inputs.step_bodies(ctx, steps[topic])
    if topic == ROLLBACK_TOPIC:
        return inputs.rollback_bodies(ctx)
    if topic == TICK_TOPIC:
        return inputs.tick_bodies()
    if topic == EVENTS_TOPIC:
        return inputs.transition_bodies(ctx)
    if topic == DEAD_LETTER_TOPIC:  # any message of ours may end there, well-formed or not
        return st.one_of(
            inputs.registry_bodies(ctx),
            inputs.step_bodies(ctx, StepType.DEPLOY),
            inputs.rollback_bodies(ctx),
        )
    raise KeyError(f"no fuzz payloads for topic {topic!r}: add them to tests/fuzz_targets.py")


def deliveries_for(fn: FunctionDef, ctx: Context) -> st.SearchStrategy[Delivery]:
    """Generated deliveries to the CloudEvent function `fn`."""
    assert fn.trigger_topic is not None, f"{fn.name} is an HTTP function"
    return inputs.deliveries(fn.trigger_topic, payloads_for(fn.trigger_topic, ctx))


def event_functions() -> list[FunctionDef]:
    """The CloudEvent functions of the manifest."""
    return [f for f in FUNCTIONS if not f.http]


@cache
def app(name: str) -> Any:
    """functions-framework's Flask app for the manifest's function `name` (made once per process)."""
    fn = next(f for f in FUNCTIONS if f.name == name)
    signature = "http" if fn.http else "cloudevent"
    made = functions_framework.create_app(fn.entry_point, str(ROOT / fn.source), signature)
    made.config["TESTING"] = False  # so an exception becomes the 500 Pub/Sub would see
    return made


def fuzz_world(store: Any = None, **settings: Any) -> tuple[World, Context]:
    """iris registered and one rollout in flight (so valid step events and commands act on it);
    `store` replaces the in-memory one (the emulator test passes a FirestoreStore)."""
    world = World.create(store=store, **settings)
    world.register()
    message = registry_message(
        SEED_PUSH, digest=f"{REPOSITORY}@sha256:{'a' * 64}", tag=f"{REPOSITORY}:v2"
    )
    from shared.steps import ingest

    ingest.handle(world.deps, message)
    (rollout,) = world.deps.store.active_rollouts()
    ctx = Context(REPOSITORY, "iris", rollout.value.id, rollout.value.phase.value)
    return world, ctx


@contextmanager
def serving(world: World) -> Iterator[None]:
    """The functions' instance dependencies are the world's while the block runs."""
    before = _runtime._deps
    _runtime._deps = world.deps
    try:
        yield
    finally:
        _runtime._deps = before


@dataclass
class Result:
    """How one request ended."""

    outcome: str
    status: int
    records: list[IgnoredEvent] = field(default_factory=list)
    detail: str = ""

    @property
    def recorded_bytes(self) -> int:
        """The largest stored size of the records it left (JSON of the document)."""
        return max((record_size(r) for r in self.records), default=0)


def record_size(record: IgnoredEvent) -> int:
    """Bytes of the record as stored (its document as JSON, UTF-8)."""
    doc = record.to_document()
    return len(json.dumps(doc, default=str, ensure_ascii=False).encode("utf-8", "replace"))


@dataclass
class Watch:
    """What one request left behind: the ignore records it wrote, the exception its view raised."""

    records: list[IgnoredEvent] = field(default_factory=list)
    raised: list[BaseException] = field(default_factory=list)


@contextmanager
def watching(world: World, flask_app: Any) -> Iterator[Watch]:
    """Serve `world` to the functions and note every ignore record and every exception meanwhile."""
    watch = Watch()
    store_record = world.store.record_ignored

    def record(event: IgnoredEvent) -> None:
        watch.records.append(event)
        store_record(event)

    def keep(sender: Any, exception: BaseException, **extra: Any) -> None:
        watch.raised.append(exception)

    world.store.record_ignored = record
    try:
        with serving(world), got_request_exception.connected_to(keep, flask_app):
            yield watch
    finally:
        del world.store.record_ignored  # the store's own method again


def deliver(world: World, function: str, delivery: Delivery) -> Result:
    """Send one delivery to the function's app and say how it ended; never raises."""
    flask_app = app(function)
    watch = Watch()
    try:
        with watching(world, flask_app) as watch:
            response = flask_app.test_client().open(
                delivery.path, method="POST", headers=delivery.headers, data=delivery.body
            )
        status = response.status_code
        detail = response.get_data(as_text=True)[:300] if status >= 300 else ""
        if watch.raised:
            detail = _describe(watch.raised[0])
    except Exception as exc:  # counted, never hidden: the bench prints it
        return Result(UNHANDLED, 0, watch.records, _describe(exc))
    new = watch.records
    problem = invariant_broken(world, new)
    if status not in (200, 201, 202, 204, 102):  # what acknowledges a Pub/Sub push
        return Result(UNHANDLED, status, new, detail)
    if problem:
        return Result(UNHANDLED, status, new, problem)
    return Result(RECORDED if new else HANDLED, status, new)


def _describe(exc: BaseException) -> str:
    """The exception and where it was raised (the innermost frame of our code)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if str(ROOT) in f.filename]
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}: {str(exc)[:240]}"


def invariant_broken(world: World, records: list[IgnoredEvent]) -> str:
    """What is wrong after a request ('' when nothing): the state loads, one active rollout per
    service, every new ignore record bounded."""
    try:
        active = world.deps.store.active_rollouts()
    except Exception as exc:
        return f"stored state no longer loads: {type(exc).__name__}: {exc}"[:300]
    services = [r.value.service for r in active]
    if len(services) != len(set(services)):
        return f"more than one active rollout for a service: {services}"
    for record in records:
        if record_size(record) > MAX_RECORD_BYTES:
            return f"ignore record {record.id[:60]!r} is {record_size(record)} bytes"
    return ""


def valid_delivery(ctx: Context, topic: str, body: bytes) -> Delivery:
    """A plain, well-formed push of `body` (for tests that need one input that must be handled)."""
    from events.pubsub import PubSubMessage

    envelope = pubsub_envelope(PubSubMessage("m-valid", body))
    return Delivery(
        "push",
        f"/projects/p/topics/{topic}",
        {"Content-Type": "application/json"},
        inputs.dumps(envelope),
    )
