"""Hypothesis strategies for fuzzing: every event kind's payload, valid and broken field by field, in
every envelope hekaton receives (raw Pub/Sub push JSON, Eventarc binary and structured CloudEvents).

Shared by the property tests (tests/unit/test_fuzz_*.py) and `bench/fuzz.py`. Pathological values
(MB strings, 10k-level nesting, 1e400 and 10**5000 as JSON text) are built once and picked, so a
generated example stays cheap however large the input it stands for.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from hypothesis import strategies as st

from events.steps import SPEC_VERSION, StepType
from events.transitions import TRANSITION_TYPE, transition_id

PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
HUGE = "x" * (2 << 20)  # 2 MiB of text
# JSON text Python's json module cannot turn into ordinary values: each must end as a clear refusal.
RAW_JSON = (
    "1e400",
    "-1e400",
    "1" + "0" * 5000,  # 10**5000: more digits than int() accepts by default
    "NaN",
    "Infinity",
    "[" * 10_000 + "]" * 10_000,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
)
ODD_STRINGS = (
    "",
    " ",
    "/",
    ".",
    "..",
    "../../etc/passwd",
    "a/b",
    "rollouts/x/decisions/y",
    "__x__",
    "__name__",
    "\x00",
    "a\x00b",
    "\udc80",  # a lone surrogate: JSON allows it, UTF-8 cannot encode it
    "%2e%2e",
    "%2F",
    "%252e%252e",
    "é" * 800,  # 1600 bytes: over Firestore's 1500-byte id limit in fewer characters
    "x" * 1600,
    HUGE,
)
BAD_BODIES = (
    b"",
    b"\xff\xfe\xfd",
    b'{"action": "INSERT", "tag": "\xc3\x28"}',  # invalid UTF-8 inside JSON
    b"{",
    b"null",
    b"[]",
    b'"text"',
    b"{}",
    HUGE.encode(),
)
HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Raw:
    """JSON text spliced in verbatim where a value would go (numbers or nesting json.dumps cannot write)."""

    text: str


def dumps(value: Any) -> bytes:
    """JSON bytes of `value`, with every Raw spliced in as it is (and lone surrogates kept as escapes)."""
    raws: list[str] = []

    def mark(item: Any) -> Any:
        if isinstance(item, Raw):
            raws.append(item.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(item, dict):
            return {str(k): mark(v) for k, v in item.items()}
        if isinstance(item, list):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value))
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{index}\x00"), raw, 1)
    return text.encode()


@cache
def odd_values(*, raw: bool = True) -> st.SearchStrategy[Any]:
    """Nulls, wrong types, path characters, huge and deep values: what goes into any one field.

    `raw=False` leaves out the JSON text Python cannot decode (for the framing Google builds).
    """
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(ODD_STRINGS),
        st.text(max_size=40),
        *([st.sampled_from(RAW_JSON).map(Raw)] if raw else []),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=6,
    )


@dataclass(frozen=True)
class Context:
    """What exists in the fuzzed world, so valid inputs can name it: one service, one rollout."""

    repository: str
    service: str
    rollout_id: str
    phase: str


def mutated(
    valid: dict[str, Any],
    fields: tuple[str, ...],
    odd: st.SearchStrategy[Any] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """`valid` as it is, or with some fields replaced by odd values, dropped, or joined by unknown ones."""
    values = odd if odd is not None else odd_values()

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        payload = dict(valid)
        for name in draw(st.lists(st.sampled_from(fields), max_size=len(fields), unique=True)):
            if draw(st.booleans()):
                payload[name] = draw(values)
            else:
                payload.pop(name, None)
        if draw(st.integers(0, 9)) == 0:
            payload[draw(st.sampled_from(("extra", "__x__", "", "data/..")))] = draw(values)
        return payload

    return st.one_of(st.just(dict(valid)), build())


def bodies(objects: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A message body: mostly the JSON of a (mutated) object, sometimes raw JSON, bytes or garbage."""
    return st.one_of(
        objects.map(dumps),
        objects.map(dumps),
        objects.map(dumps),
        st.sampled_from(RAW_JSON).map(str.encode),
        st.sampled_from(BAD_BODIES),
        st.binary(max_size=64),
    )


def digests() -> st.SearchStrategy[str]:
    """`sha256:<64 hex>`."""
    return st.text(alphabet=HEX, min_size=64, max_size=64).map(lambda h: f"sha256:{h}")


def registry_bodies(ctx: Context) -> st.SearchStrategy[bytes]:
    """Artifact Registry notifications (topic `gcr`): INSERT/DELETE by digest and/or tag."""

    @st.composite
    def valid(draw: st.DrawFn) -> dict[str, Any]:
        tag = f"v{draw(st.integers(0, 999))}"
        body: dict[str, Any] = {
            "action": draw(st.sampled_from(("INSERT", "DELETE"))),
            "digest": f"{ctx.repository}@{draw(digests())}",
            "tag": f"{ctx.repository}:{tag}",
        }
        return draw(mutated(body, ("action", "digest", "tag")))

    return bodies(valid())


def step_bodies(ctx: Context, step: StepType) -> st.SearchStrategy[bytes]:
    """Structured step CloudEvents, with the envelope's and the data's fields mutated."""

    @st.composite
    def valid(draw: st.DrawFn) -> dict[str, Any]:
        data = {
            "rollout_id": ctx.rollout_id,
            "service": ctx.service,
            "phase": ctx.phase,
            "step_index": draw(st.integers(0, 3)),
            "cause": "fuzz",
        }
        envelope: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "type": draw(st.sampled_from([step.value, step.value, *StepType])),
            "source": "//hekaton.dev/functions/fuzz",
            "id": draw(st.text(max_size=12)),
            "time": "2026-01-01T00:00:00+00:00",
            "datacontenttype": "application/json",
            "subject": f"rollouts/{ctx.rollout_id}",
            "data": draw(mutated(data, tuple(data))),
        }
        return draw(mutated(envelope, ("specversion", "type", "id", "time", "data")))

    return bodies(valid())


def rollback_bodies(ctx: Context) -> st.SearchStrategy[bytes]:
    """Operator rollback commands (topic `hekaton-rollback`)."""
    body = {"service": ctx.service, "revision": None, "reason": "fuzz", "requested_by": "fuzz"}
    return bodies(mutated(body, tuple(body)))


def tick_bodies() -> st.SearchStrategy[bytes]:
    """Scheduler ticks: the body is not read, so anything goes."""
    return st.one_of(st.just(b"tick"), bodies(st.just({})), st.binary(max_size=32))


def transition_bodies(ctx: Context) -> st.SearchStrategy[bytes]:
    """Transition events (topic `hekaton-events`), as the notify sink receives them."""
    data = {
        "service": ctx.service,
        "rollout_id": ctx.rollout_id,
        "seq": 1,
        "phase_from": "",
        "phase_to": ctx.phase,
        "outcome": "started",
        "reason": "fuzz",
        "at": "2026-01-01T00:00:00+00:00",
        "image": "",
        "revision": "",
        "traffic_percent": 0,
        "message_id": "m",
        "figures": {},
    }

    @st.composite
    def valid(draw: st.DrawFn) -> dict[str, Any]:
        inner = draw(mutated(data, tuple(data)))
        envelope: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "type": TRANSITION_TYPE,
            "source": "//hekaton.dev/functions/fuzz",
            "id": transition_id(ctx.rollout_id, 1),
            "time": data["at"],
            "data": inner,
        }
        return draw(mutated(envelope, ("specversion", "type", "id", "data")))

    return bodies(valid())


# --- envelopes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One HTTP request to a CloudEvent function, as Pub/Sub push or Eventarc would send it."""

    mode: str  # "push", "binary" or "structured"
    path: str
    headers: dict[str, str]
    body: bytes


def _message(draw: st.DrawFn, body: bytes, *, push: bool) -> dict[str, Any]:
    """The Pub/Sub message object, its fields sometimes broken (bad base64, odd ids and types).

    A raw push always carries `data` and a string `messageId` (functions-framework refuses one
    without them, with a 400, before any code of ours runs).
    """
    message: dict[str, Any] = {
        "data": base64.b64encode(body).decode(),
        "messageId": draw(st.sampled_from(("m-1", "12345"))),
        "publishTime": "2026-01-01T00:00:00.000Z",
        "attributes": {},
    }
    # Google builds this JSON: its values are what a Pub/Sub message can hold, however odd.
    broken = st.one_of(
        odd_values(raw=False),
        st.sampled_from(("not base64!", "QQ", "====", "\udc80", "QUJD\x00", *ODD_STRINGS)),
    )
    if push:
        message["messageId"] = draw(st.sampled_from(ODD_STRINGS[1:-1]))
        changed = draw(mutated(message, ("data", "publishTime", "attributes"), broken))
        return {"data": "", **changed, "messageId": message["messageId"]}
    return draw(mutated(message, ("data", "messageId", "publishTime", "attributes"), broken))


def deliveries(topic: str, payloads: st.SearchStrategy[bytes]) -> st.SearchStrategy[Delivery]:
    """Requests carrying `payloads` to a function triggered by `topic`, in the three envelope modes.

    The framing is what Pub/Sub push and Eventarc always send (a JSON object with a `message`
    object; CloudEvent attributes present and non-empty); everything inside it varies.
    """

    @st.composite
    def build(draw: st.DrawFn) -> Delivery:
        mode = draw(st.sampled_from(("push", "binary", "structured")))
        message = _message(draw, draw(payloads), push=mode == "push")
        envelope: Any = {"message": message, "subscription": "projects/p/subscriptions/s"}
        if mode == "push":
            return Delivery(
                mode,
                f"/projects/p/topics/{topic}",
                {"Content-Type": "application/json"},
                dumps(envelope),
            )
        if draw(st.integers(0, 9)) == 0:  # CloudEvent data that is no Pub/Sub envelope at all
            envelope = draw(odd_values(raw=False))
        attribute = st.sampled_from(ODD_STRINGS[1:-1]).filter(_header_safe)
        attributes = {
            "specversion": "1.0",
            "type": draw(st.one_of(st.just(PUBSUB_TYPE), st.just(PUBSUB_TYPE), attribute)),
            "source": draw(
                st.one_of(
                    st.just(f"//pubsub.googleapis.com/projects/p/topics/{topic}"),
                    attribute.map(lambda t: f"//pubsub.googleapis.com/projects/p/topics/{t}"),
                    attribute,
                )
            ),
            "id": draw(st.one_of(st.just("ce-1"), attribute)),
        }
        if mode == "binary":
            headers = {"Content-Type": "application/json"}
            headers.update({f"ce-{k}": v for k, v in attributes.items()})
            return Delivery(mode, "/", headers, dumps(envelope))
        event = {**attributes, "data": envelope}
        return Delivery(mode, "/", {"Content-Type": "application/cloudevents+json"}, dumps(event))

    return build()


def _header_safe(text: str) -> bool:
    """Whether HTTP can carry `text` as a header value unchanged."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return bool(text.strip()) and "\x00" not in text and len(text) < 4096
