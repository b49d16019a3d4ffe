"""The engine's named crash points: parsed from settings, seeded, and a crash at each one converges."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import crashpoints
from shared.crashpoints import CRASH_EXIT_CODE, POINTS, CrashPoints, parse
from shared.errors import PermanentError
from shared.phases import Phase
from shared.settings import Settings
from tests.fakes import decision_trail
from tests.unit.test_rules_crash import promoted_v1, reference_trail


class InjectedCrash(Exception):
    """Stands in for os._exit in-process: the delivery fails and Pub/Sub redelivers."""


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    yield
    crashpoints.arm(None)


def test_parse_reads_points_and_names_a_bad_entry() -> None:
    assert parse("after_commit:0.05, before_publish:1") == {
        "after_commit": 0.05,
        "before_publish": 1.0,
    }
    assert parse("") == {}
    with pytest.raises(ValueError, match="unknown crash point 'after_lunch'"):
        parse("after_lunch:0.1")
    with pytest.raises(ValueError, match="after_kube: probability must be in"):
        parse("after_kube:1.5")
    with pytest.raises(ValueError, match="after_kube: probability"):
        parse("after_kube")


def test_settings_name_the_variable_of_bad_crash_points() -> None:
    env = {"HEKATON_PROJECT": "p", "HEKATON_CRASH_POINTS": "after_kube:2"}
    with pytest.raises(PermanentError, match="HEKATON_CRASH_POINTS"):
        Settings.from_env(env)
    ok = Settings.from_env({"HEKATON_PROJECT": "p", "HEKATON_CRASH_POINTS": "after_commit:0.5"})
    assert ok.crash_points == {"after_commit": 0.5} and Settings(project="p").crash_points == {}


def test_the_same_seed_fires_at_the_same_draws_and_exits_with_the_crash_code() -> None:
    exits: list[int] = []

    def fires(seed: int) -> list[bool]:
        points = CrashPoints({"after_commit": 0.3}, seed, exit=exits.append)
        return [points.reached("after_commit") for _ in range(200)]

    first, again, other = fires(7), fires(7), fires(8)
    assert first == again and first != other
    assert 40 <= sum(first) <= 80  # about 30 % of 200
    assert set(exits) == {CRASH_EXIT_CODE}
    never = CrashPoints({"after_commit": 0.3}, 7, exit=exits.append)
    assert not any(never.reached("before_publish") for _ in range(50))  # not armed: never


def test_unarmed_reach_does_nothing() -> None:
    crashpoints.arm(None)
    for point in POINTS:
        crashpoints.reach(point)  # no exception, no exit


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_at_each_point_converges_to_the_undisturbed_rollout(point: str) -> None:
    """The worker dies once at `point` (in the middle of v2's rollout); redelivery and the sweep
    bring it to the same end, with the same decision log, as a run without the crash."""
    world, pipeline = promoted_v1()
    fired: list[str] = []

    def die(code: int) -> None:
        fired.append(point)
        crashpoints.arm(None)  # the restarted worker is a new process: no second crash
        raise InjectedCrash(f"crashed at {point} (exit {code})")

    skip = {"left": 3}  # let the first few points pass, so the crash lands mid-rollout

    class Later(CrashPoints):
        def reached(self, name: str) -> bool:
            if name == point and skip["left"] > 0:
                skip["left"] -= 1
                return False
            return super().reached(name)

    crashpoints.arm(Later({point: 1.0}, 0, exit=die))
    world.push(pipeline, "v2")
    pipeline.run()

    assert fired == [point]
    v2 = world.rollouts()[0]
    assert v2.phase is Phase.PROMOTED
    assert decision_trail(world.store.decisions(v2.id)) == reference_trail()
    assert world.traffic() == {world.revision("v2"): 100}
