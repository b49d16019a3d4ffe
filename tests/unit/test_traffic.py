"""The traffic each rollout state wants, and the deterministic names it routes to."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from shared.model import Rollout
from shared.phases import Phase
from shared.serving import CANDIDATE_TAG, STABLE_TAG, TrafficTarget
from shared.steps.ingest import parse_time, revision_name, rollout_id
from shared.steps.traffic import desired_traffic
from tests.fakes import digest_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def rollout(phase: Phase, *, stable: str | None = "iris-old", percent: int = 0) -> Rollout:
    """A rollout of candidate `iris-new` in a given state."""
    return Rollout(
        id="r",
        service="iris",
        namespace="models",
        image="r.io/iris",
        digest=digest_of("new"),
        revision="iris-new",
        phase=phase,
        created_at=T0,
        updated_at=T0,
        steps=[10, 50, 100],
        stable_revision=stable,
        traffic_percent=percent,
    )


def as_pairs(targets: list[TrafficTarget]) -> list[tuple[str, int, str | None]]:
    """(revision, percent, tag) for each entry."""
    return [(t.revision, t.percent, t.tag) for t in targets]


@pytest.mark.parametrize("phase", sorted(Phase))
def test_every_phase_wants_a_valid_traffic_block(phase: Phase) -> None:
    """Whatever the phase, the block is empty or sums to 100 with unique tags and pinned revisions."""
    for stable in ("iris-old", None):
        for percent in (0, 10, 100):
            targets = desired_traffic(rollout(phase, stable=stable, percent=percent))
            if targets:
                assert sum(t.percent for t in targets) == 100
                tags = [t.tag for t in targets]
                assert len(set(tags)) == len(tags)
                assert all(t.revision for t in targets)


@pytest.mark.parametrize(
    "phase",
    [Phase.DEPLOYING, Phase.WAITING_READY, Phase.VALIDATING, Phase.SHIFTING, Phase.PROMOTING],
)
def test_active_phases_split_by_the_candidate_share(phase: Phase) -> None:
    """While active, stable keeps everything the candidate does not hold."""
    assert as_pairs(desired_traffic(rollout(phase, percent=0))) == [
        ("iris-old", 100, STABLE_TAG),
        ("iris-new", 0, CANDIDATE_TAG),
    ]
    assert as_pairs(desired_traffic(rollout(phase, percent=50))) == [
        ("iris-old", 50, STABLE_TAG),
        ("iris-new", 50, CANDIDATE_TAG),
    ]


def test_out_of_range_shares_are_clamped() -> None:
    """A corrupt share never produces an invalid block."""
    assert as_pairs(desired_traffic(rollout(Phase.SHIFTING, percent=130)))[1] == (
        "iris-new",
        100,
        CANDIDATE_TAG,
    )
    assert as_pairs(desired_traffic(rollout(Phase.SHIFTING, percent=-5)))[0] == (
        "iris-old",
        100,
        STABLE_TAG,
    )


def test_first_deploy_gives_the_candidate_everything() -> None:
    """With no stable revision the candidate is the only possible target, tagged for validation."""
    for phase in (Phase.DEPLOYING, Phase.VALIDATING, Phase.PROMOTING):
        assert as_pairs(desired_traffic(rollout(phase, stable=None))) == [
            ("iris-new", 100, CANDIDATE_TAG)
        ]


def test_promoted_candidate_is_the_new_stable() -> None:
    """Promotion routes 100 % to the candidate under the stable tag; the old revision is gone."""
    assert as_pairs(desired_traffic(rollout(Phase.PROMOTED, percent=100))) == [
        ("iris-new", 100, STABLE_TAG)
    ]


@pytest.mark.parametrize("phase", [Phase.FAILED, Phase.ROLLED_BACK, Phase.SUPERSEDED])
def test_ended_badly_returns_to_stable(phase: Phase) -> None:
    """A failed, rolled-back or superseded candidate loses its traffic and its tag."""
    assert as_pairs(desired_traffic(rollout(phase, percent=50))) == [("iris-old", 100, STABLE_TAG)]
    # Nothing to return to after a failed first deploy: leave the Service as it is.
    assert desired_traffic(rollout(phase, stable=None, percent=100)) == []


def test_revision_name_is_deterministic_and_dns_1035() -> None:
    """`<service>-<12 hex>`: same inputs, same name; it starts with `<service>-` as Knative requires."""
    digest = digest_of("v2")
    name = revision_name("iris", digest)
    assert name == f"iris-{digest.removeprefix('sha256:')[:12]}"
    assert name == revision_name("iris", digest)
    assert name != revision_name("iris", digest_of("v3"))
    assert DNS_1035.match(name)


@pytest.mark.parametrize("length", [1, 40, 50, 63, 80])
def test_revision_name_fits_63_characters(length: int) -> None:
    """Long service names are cut so the name stays a valid label of at most 63 characters."""
    service = "m" + "x" * (length - 1)
    name = revision_name(service, digest_of("v1"))
    assert len(name) <= 63 and DNS_1035.match(name)
    if length <= 40:  # the longest name a spec accepts keeps Knative's `<service>-` prefix rule
        assert name.startswith(f"{service}-")


def test_rollout_id_is_deterministic_per_push_message() -> None:
    """A redelivered push maps to the same rollout; another push of the same digest to another one."""
    digest = digest_of("v2")
    first = rollout_id("iris", digest, "msg-1")
    assert first == rollout_id("iris", digest, "msg-1")
    assert first != rollout_id("iris", digest, "msg-2")
    assert first.startswith(revision_name("iris", digest) + "-")
    assert rollout_id("iris", digest, "msg-1") != rollout_id("iris2", digest, "msg-1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T12:00:00.123456789Z", datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("2026-03-01T12:00:00.1+00:00", datetime(2026, 3, 1, 12, 0, 0, 100000, tzinfo=UTC)),
        ("yesterday", T0),
        (None, T0),
        ("2026-03-01T12:00:00", datetime(2026, 3, 1, 12, tzinfo=UTC)),  # no offset: UTC
    ],
)
def test_publish_time_parsing(text: str | None, expected: datetime) -> None:
    """Pub/Sub's nanosecond RFC 3339 times parse; anything unreadable falls back to the default."""
    parsed = parse_time(text, T0)
    assert parsed == expected and parsed.tzinfo is not None
