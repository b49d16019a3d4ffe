"""Service spec validation: every error names the offending field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.spec import ServiceSpec, SpecError, load_spec, parse_spec
from tests.fakes import iris_spec


def errors_of(data: Any) -> str:
    """The SpecError message for an invalid spec."""
    with pytest.raises(SpecError) as caught:
        parse_spec(data, origin="iris.yaml")
    return str(caught.value)


def test_valid_spec_round_trips_through_its_document() -> None:
    """The stored document (with aliases) validates back to the same spec."""
    spec = parse_spec(iris_spec())
    assert spec.steps == [10, 50, 100] and spec.namespace == "models"
    assert spec.validation.requests[0].expect.json_fields == {"ok": True}
    document = spec.to_document()
    assert document["validation"]["requests"][0]["json"] == {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    assert ServiceSpec.model_validate(document) == spec


def test_defaults() -> None:
    """Only name and image are required."""
    spec = parse_spec({"name": "m", "image": "r.io/p/m"})
    assert (spec.namespace, spec.steps, spec.tag_filter) == ("default", [10, 50, 100], ".*")
    assert spec.validation.requests == []


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"steps": [10, "ten"]}, "steps.1", "valid integer"),
        ({"steps": [10, 150]}, "steps", "between 1 and 100"),
        ({"steps": [50, 10]}, "steps", "strictly increasing"),
        ({"steps": []}, "steps", "at least 1 item"),
        ({"name": "Iris_Model"}, "name", "DNS-1035"),
        ({"namespace": "x" * 41}, "namespace", "at most 40"),
        ({"image": "r.io/p/iris:v1"}, "image", "without tag or digest"),
        ({"tag_filter": "v(\\d+"}, "tag_filter", "not a valid regular expression"),
        ({"bake_seconds": -1}, "bake_seconds", "greater than or equal to 0"),
        ({"readiness_deadline_seconds": 0}, "readiness_deadline_seconds", "greater than 0"),
        ({"bogus": 1}, "bogus", "Extra inputs are not permitted"),
        (
            {"validation": {"requests": [{"name": "p", "expect": {"status": 700}}]}},
            "validation.requests.0.expect.status",
            "less than or equal to 599",
        ),
        (
            {"validation": {"requests": [{"name": "p", "expect": {"stauts": 200}}]}},
            "validation.requests.0.expect.stauts",
            "Extra inputs are not permitted",
        ),
        (
            {"validation": {"requests": [{"name": "p", "method": "FETCH"}]}},
            "validation.requests.0.method",
            "should match pattern",
        ),
        (
            {"validation": {"requests": [{"name": "p", "path": "predict"}]}},
            "validation.requests.0.path",
            "should match pattern",
        ),
        ({"validation": {"timeout_seconds": 0}}, "validation.timeout_seconds", "greater than 0"),
    ],
)
def test_errors_name_the_field(overrides: dict[str, Any], field: str, problem: str) -> None:
    """Each invalid value is reported as `field.path: problem`, prefixed by where the spec came from."""
    message = errors_of(iris_spec(**overrides))
    assert message.startswith("iris.yaml is invalid:")
    lines = message.splitlines()[1:]
    assert any(line.strip().startswith(f"{field}:") and problem in line for line in lines), message


def test_every_error_is_listed() -> None:
    """Several problems are reported together, one line each."""
    message = errors_of(iris_spec(name="Bad", steps=[0], bogus=True))
    assert len(message.splitlines()) == 4
    for field in ("name:", "steps:", "bogus:"):
        assert field in message


def test_missing_required_fields_and_bad_top_level() -> None:
    """A spec without name/image names both; a non-mapping is refused with its type."""
    message = errors_of({})
    assert "name: Field required" in message and "image: Field required" in message
    assert "expected a mapping at the top level, got list" in errors_of(["iris"])


def test_scale_bounds_are_checked_together() -> None:
    """min_scale above max_scale is refused."""
    assert "min_scale must not exceed max_scale" in errors_of(iris_spec(min_scale=3, max_scale=2))


@pytest.mark.parametrize(
    ("tag_filter", "tag", "accepted"),
    [
        (r"v\d+", "v12", True),
        (r"v\d+", "v12-rc", False),  # the whole tag must match
        (r"v\d+", None, False),  # a digest-only push has no tag to match
        (".*", None, True),
        ("", None, True),
        ("(prod-.*)?", None, True),
    ],
)
def test_tag_filter(tag_filter: str, tag: str | None, accepted: bool) -> None:
    """The tag filter matches whole tags; digest-only pushes pass only a filter that accepts ''."""
    assert parse_spec(iris_spec(tag_filter=tag_filter)).accepts_tag(tag) is accepted


def test_load_spec_from_yaml(tmp_path: Path) -> None:
    """A YAML file loads; unreadable files and bad YAML get errors naming the file."""
    good = tmp_path / "service.yaml"
    good.write_text("name: iris\nimage: r.io/p/iris\nsteps: [25, 100]\nbake_seconds: 5\n")
    assert load_spec(good).steps == [25, 100]
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [iris\n")
    with pytest.raises(SpecError, match=r"broken\.yaml is not valid YAML"):
        load_spec(broken)
    with pytest.raises(SpecError, match=r"cannot read service spec .*missing\.yaml"):
        load_spec(tmp_path / "missing.yaml")
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("name: iris\nimage: r.io/p/iris\nsteps: [10, 101]\n")
    with pytest.raises(SpecError, match=r"invalid.yaml is invalid:\n  steps: "):
        load_spec(invalid)
