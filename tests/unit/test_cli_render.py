"""What the CLI prints for a running step: the live figures line in status and watch."""

from __future__ import annotations

from typing import Any

import pytest

from cli.rollout_commands import render_figures, render_progress, render_status, step_text


def figures(**overrides: Any) -> dict[str, Any]:
    """A running step's analysis figures as the status API returns them."""
    base: dict[str, Any] = {
        "at": "2026-12-01T10:00:05.250000+00:00",
        "step": 0,
        "percent": 10,
        "verdict": "continue",
        "reason": "error rate 0.0% (0/40) vs stable 0.0% (0/360): not enough evidence yet",
        "needed_requests": 1250,
        "problem": None,
    }
    base.update(overrides)
    return base


def test_figures_line_says_verdict_rates_and_what_is_still_needed() -> None:
    """The line names the step, the verdict, the measured rates and the evidence still missing."""
    line = render_figures(figures())
    assert line.startswith("step 10% · CONTINUE · error rate 0.0% (0/40)")
    assert line.endswith("needs ~1,250 more candidate requests")


def test_a_measuring_problem_is_shown_not_hidden() -> None:
    """When Prometheus cannot be reached the live line says so."""
    line = render_figures(figures(needed_requests=None, problem="metrics unavailable: refused"))
    assert "needs" not in line and line.endswith("metrics unavailable: refused")


def test_progress_line_has_the_time_of_the_evaluation() -> None:
    """watch prints the evaluation time in the decision column layout."""
    assert render_progress(figures()).startswith("  10:00:05.250    analysing")


def test_status_shows_the_live_line_for_the_active_rollout() -> None:
    """`hekaton status` shows the running step's figures under the active rollout."""
    status = {
        "service": "iris",
        "namespace": "models",
        "stable_revision": "iris-aaa",
        "stable_image": None,
        "traffic": [{"revision": "iris-aaa", "percent": 90, "tag": "stable"}],
        "active_rollout": {
            "id": "iris-bbb-1",
            "phase": "SHIFTING",
            "step": 0,
            "steps": [10, 50, 100],
            "image": "r/iris:v2",
            "analysis": figures(),
        },
        "last_rollout": None,
    }
    lines = render_status(status).splitlines()
    live = [line for line in lines if line.strip().startswith("live:")]
    assert live == ["  live:    " + render_figures(figures())]


def test_status_shows_the_warm_previous_revision_and_how_to_return_to_it() -> None:
    status = {
        "service": "iris",
        "namespace": "models",
        "stable_revision": "iris-bbb",
        "stable_image": None,
        "previous_revision": "iris-aaa",
        "previous_warm_until": "2026-03-01T12:10:00+00:00",
        "traffic": [
            {"revision": "iris-bbb", "percent": 100, "tag": "stable"},
            {"revision": "iris-aaa", "percent": 0, "tag": "previous"},
        ],
        "active_rollout": None,
        "last_rollout": None,
    }
    lines = render_status(status).splitlines()
    assert "    iris-aaa                           0%  previous" in lines
    assert (
        "  warm:    iris-aaa (previous stable, 0%) until 2026-03-01T12:10:00+00:00: "
        "`hekaton rollback iris` returns to it at once"
    ) in lines


@pytest.mark.parametrize(
    ("phase", "step", "shown"),
    [
        ("SHIFTING", 0, "step 1 of 3 (10%)"),
        ("PAUSED", 1, "step 2 of 3 (50%)"),  # what `resume` then words as "resumed at step 2 of 3"
        ("AWAITING_APPROVAL", 2, "step 3 of 3 (100%)"),
        ("VALIDATING", 0, "steps [10, 50, 100]"),  # no step held yet
        ("SHIFTING", 7, "steps [10, 50, 100]"),  # an index out of range is not invented into one
    ],
)
def test_the_active_step_is_counted_from_one_with_its_percent(
    phase: str, step: int, shown: str
) -> None:
    assert step_text({"phase": phase, "step": step, "steps": [10, 50, 100]}) == shown
