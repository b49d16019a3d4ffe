"""The `analysis:` section of a service spec: defaults a user can rely on, errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from shared.analysis.criteria import Criteria
from shared.spec import SpecError, parse_spec
from tests.fakes import iris_spec


def errors_of(data: Any) -> str:
    """The SpecError message for an invalid spec."""
    with pytest.raises(SpecError) as caught:
        parse_spec(data, origin="iris.yaml")
    return str(caught.value)


def test_defaults_need_no_analysis_section() -> None:
    """Without `analysis:` the candidate is still judged, with documented defaults."""
    analysis = parse_spec({"name": "m", "image": "r.io/p/m"}).analysis
    assert analysis.enabled and analysis.confidence == 0.95
    assert (analysis.error_rate.max_rate, analysis.error_rate.max_increase) == (0.05, 0.003)
    assert (analysis.latency.threshold_ms, analysis.on_thin_evidence) == (500, "wait")
    assert analysis.min_requests == 50 and analysis.max_wait_seconds == 900
    assert analysis.criteria() == Criteria()  # the judge's own defaults, chosen by the bench


def test_section_round_trips_through_the_stored_document() -> None:
    """The stored spec document validates back to the same analysis settings."""
    section = {
        "interval_seconds": 2,
        "min_requests": 30,
        "on_thin_evidence": "top_up",
        "error_rate": {"max_increase": 0.02},
        "latency": {"threshold_ms": 250, "max_ratio": 2},
    }
    spec = parse_spec(iris_spec(analysis=section))
    again = parse_spec(spec.to_document())
    assert again.analysis == spec.analysis
    assert again.analysis.error_rate.max_ratio == 2.0  # untouched fields keep their defaults
    assert again.analysis.latency.max_ratio == 2.0


@pytest.mark.parametrize(
    ("section", "field", "problem"),
    [
        ({"confidence": 1.5}, "analysis.confidence", "less than or equal to 0.999"),
        ({"confidence": 0.5}, "analysis.confidence", "greater than or equal to 0.8"),
        ({"min_requests": 0}, "analysis.min_requests", "greater than or equal to 1"),
        ({"on_thin_evidence": "guess"}, "analysis.on_thin_evidence", "'wait', 'top_up' or 'fail'"),
        ({"error_rate": {"max_rate": 0}}, "analysis.error_rate.max_rate", "greater than 0"),
        ({"error_rate": {"max_ratio": 0.5}}, "analysis.error_rate.max_ratio", "greater than or"),
        (
            {"latency": {"threshold_ms": 300}},
            "analysis.latency.threshold_ms",
            "use one of 250, 500",
        ),
        ({"latency": {"p99": 300}}, "analysis.latency.p99", "Extra inputs are not permitted"),
        ({"interval": 5}, "analysis.interval", "Extra inputs are not permitted"),
        ({"interval_seconds": 60, "max_wait_seconds": 30}, "analysis", "must not exceed"),
    ],
)
def test_errors_name_the_field(section: dict[str, Any], field: str, problem: str) -> None:
    """Each invalid analysis value is reported as `analysis.field: problem`."""
    message = errors_of(iris_spec(analysis=section))
    lines = message.splitlines()[1:]
    assert any(line.strip().startswith(f"{field}:") and problem in line for line in lines), message


def test_evidence_deadline_cannot_end_before_the_bake() -> None:
    """A step that must decide before its bake time ends is refused at register."""
    message = errors_of(iris_spec(bake_seconds=600, analysis={"max_wait_seconds": 60}))
    assert "analysis.max_wait_seconds must be at least bake_seconds" in message
    # With analysis disabled there is no evidence deadline to compare.
    parse_spec(iris_spec(bake_seconds=600, analysis={"enabled": False, "max_wait_seconds": 60}))
