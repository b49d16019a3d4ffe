"""The soak's scenario is a pure function of its seed, and its comparison finds what differs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from local.soak.compare import compare, normalize_reason
from local.soak.scenario import MAX_ROLLOUTS_PER_SERVICE, make_scenario


def test_the_scenario_is_the_seeds_and_spreads_kinds_and_commands() -> None:
    first, again = make_scenario(3, 200, 20), make_scenario(3, 200, 20)
    assert first == again and first != make_scenario(4, 200, 20)
    rollouts = [r for s in first for r in s.rollouts]
    assert len(rollouts) == 200 and len({(r.service, r.tag) for r in rollouts}) == 200
    assert all(s.rollouts[0].kind == "good" and s.rollouts[0].command is None for s in first)
    assert {r.kind for r in rollouts} == {"good", "bad", "crash"}
    commands = [r.command.action for r in rollouts if r.command]
    assert set(commands) == {"abort", "promote", "rollback", "pause-resume"}
    # Only manual services get commands; their bake is what holds the rollout at the step.
    assert all(s.manual or not any(r.command for r in s.rollouts) for s in first)
    assert max(s.spec()["bake_seconds"] for s in first) > 600


def test_the_scenario_refuses_sizes_the_catalog_cannot_serve() -> None:
    with pytest.raises(ValueError, match="--services must be between 1 and 20"):
        make_scenario(1, 10, 21)
    with pytest.raises(ValueError, match="--rollouts must be between 4 and"):
        make_scenario(1, 4 * MAX_ROLLOUTS_PER_SERVICE + 1, 4)


def test_reasons_lose_ids_times_and_durations_only() -> None:
    reason = "superseded by iris-0123456789ab-a1b2c3 at 2026-12-01T21:00:00.123+00:00 after 1.25s"
    assert normalize_reason(reason) == "superseded by <rollout> at <time> after <duration>"
    assert normalize_reason("step 10% passed; next 50%") == "step 10% passed; next 50%"
    assert normalize_reason("validation failed after 2 attempts: x") == "validation failed: x"
    assert normalize_reason("reused existing revision r-1 for v") == normalize_reason(
        "created revision r-1 for v"
    )
    assert normalize_reason("created revision r-1") != normalize_reason("created revision r-2")


def _run() -> dict[str, Any]:
    decisions = [
        {"seq": 1, "phase_from": "", "phase_to": "DEPLOYING", "outcome": "created", "reason": "a"},
        {
            "seq": 2,
            "phase_from": "DEPLOYING",
            "phase_to": "FAILED",
            "outcome": "failed",
            "reason": "b",
        },
    ]
    return {
        "seed": 1,
        "faults": {},
        "services": [{"name": "s", "traffic": [["s-1", 100]]}],
        "rollouts": [
            {"service": "s", "index": 0, "tag": "good-0", "phase": "FAILED", "seconds": 2.0,
             "lost": None, "decisions": decisions},
        ],
    }  # fmt: skip


def test_comparison_counts_lost_duplicated_missing_and_wrong() -> None:
    baseline = _run()
    assert compare(copy.deepcopy(baseline), baseline).ok

    doubled = copy.deepcopy(baseline)
    doubled["rollouts"][0]["decisions"].append({**doubled["rollouts"][0]["decisions"][1], "seq": 3})
    result = compare(doubled, baseline)
    assert len(result.duplicated) == 1 and not result.missing and not result.ok

    short = copy.deepcopy(baseline)
    short["rollouts"][0]["decisions"].pop()
    short["rollouts"][0]["phase"] = "DEPLOYING"
    result = compare(short, baseline)
    assert len(result.missing) == 1 and len(result.wrong_phase) == 1

    lost = copy.deepcopy(baseline)
    lost["rollouts"][0].update(phase=None, lost="not ended within 120s")
    lost["services"][0]["traffic"] = [["s-0", 100]]
    result = compare(lost, baseline)
    assert len(result.lost) == 1 and len(result.wrong_traffic) == 1 and result.converge() == (0, 0)


def test_a_differing_zero_percent_route_is_wrong_in_a_row_of_its_own() -> None:
    baseline = _run()
    drifted = copy.deepcopy(baseline)
    drifted["services"][0]["traffic"] = [["s-1", 100], ["s-0", 0]]
    result = compare(drifted, baseline)
    assert not result.ok and not result.wrong_traffic and len(result.route_drift) == 1

    moved = copy.deepcopy(baseline)
    moved["services"][0]["traffic"] = [["s-1", 90], ["s-0", 10]]
    result = compare(moved, baseline)
    assert not result.ok and len(result.wrong_traffic) == 1 and not result.route_drift
