"""Service spec validation: every error names the offending field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.spec import ServiceSpec, SpecError, load_spec, parse_field_path, parse_spec
from tests.fakes import iris_spec

GOLDEN: dict[str, Any] = {
    "requests": [{"json": {"instances": [[5.1, 3.5, 1.4, 0.2]]}}],
    "fields": {"predictions": "exact"},
}


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
        (
            {"validation": {"requests": [{"name": "p", "expect": {"schema": {"type": "blob"}}}]}},
            "validation.requests.0.expect.schema",
            "not a valid JSON Schema: $.type:",
        ),
        (
            {"validation": {"requests": [{"name": "p", "expect": {"headers": {"X-A": 5}}}]}},
            "validation.requests.0.expect.headers",
            "X-A: expected a string (the exact value) or {regex: PATTERN}",
        ),
        (
            {
                "validation": {
                    "requests": [{"name": "p", "expect": {"headers": {"X": {"regex": "("}}}}]
                }
            },
            "validation.requests.0.expect.headers",
            "X: regex is not a valid regular expression",
        ),
        (
            {
                "validation": {
                    "requests": [{"name": "p", "expect": {"headers": {"a": "1", "A": "2"}}}]
                }
            },
            "validation.requests.0.expect.headers",
            "named twice (header names are case-insensitive)",
        ),
        (
            {
                "validation": {
                    "requests": [
                        {"name": "p", "json": {"x": 1}, "repeat": {"field": "x", "times": 2}}
                    ]
                }
            },
            "validation.requests.0",
            "repeat needs a non-empty list at json.x",
        ),
        (
            {
                "validation": {
                    "requests": [
                        {"name": "p", "json": {"x": [1]}, "repeat": {"field": "x", "times": 0}}
                    ]
                }
            },
            "validation.requests.0.repeat.times",
            "greater than or equal to 1",
        ),
        (
            {"validation": {"max_request_bytes": 0}},
            "validation.max_request_bytes",
            "greater than 0",
        ),
        (
            {"validation": {"warmup_seconds": -1}},
            "validation.warmup_seconds",
            "greater than or equal to 0",
        ),
        ({"validation": {"retry_seconds": 0}}, "validation.retry_seconds", "greater than 0"),
        (
            {"validation": {"golden": {**GOLDEN, "min_agreement": 1.5}}},
            "validation.golden.min_agreement",
            "less than or equal to 1",
        ),
        (
            {"validation": {"golden": {**GOLDEN, "max_distance": -0.1}}},
            "validation.golden.max_distance",
            "greater than or equal to 0",
        ),
        (
            {"validation": {"golden": {**GOLDEN, "fields": {"predictions": "exactly"}}}},
            "validation.golden.fields",
            "predictions: expected 'exact' or {tolerance: NUMBER >= 0}, got 'exactly'",
        ),
        (
            {"validation": {"golden": {**GOLDEN, "fields": {"p": {"tolerance": -1}}}}},
            "validation.golden.fields",
            "p: expected 'exact' or {tolerance: NUMBER >= 0}",
        ),
        (
            {"validation": {"golden": {**GOLDEN, "fields": {"$.a[x]": "exact"}}}},
            "validation.golden.fields",
            "'$.a[x]': is not a field path",
        ),
        (
            {"validation": {"golden": {**GOLDEN, "fields": {}}}},
            "validation.golden.fields",
            "at least 1 item",
        ),
        (
            {"validation": {"golden": {**GOLDEN, "max_requests": 1001}}},
            "validation.golden.max_requests",
            "less than or equal to 1000",
        ),
        (
            {"validation": {"golden": {**GOLDEN, "concurrency": 0}}},
            "validation.golden.concurrency",
            "greater than or equal to 1",
        ),
        (
            {"validation": {"golden": {**GOLDEN, "requests": [{"json": 1}] * 1001}}},
            "validation.golden.requests",
            "1,001 golden requests; at most 1,000 (golden requests are embedded into the stored spec, and a Firestore document holds at most 1 MiB)",
        ),
        (
            {"validation": {"golden": {**GOLDEN, "requests": [{"json": "x" * 600_000}]}}},
            "validation.golden.requests",
            "golden requests are 600,012 bytes; at most 524,288 (512 KiB",
        ),
        (
            {"validation": {"golden": {**GOLDEN, "requests": [{"jsn": 1}]}}},
            "validation.golden.requests.0.jsn",
            "Extra inputs are not permitted",
        ),
        (
            {
                "validation": {
                    "golden": {"file": "golden.jsonl", "fields": {"predictions": "exact"}}
                }
            },
            "validation.golden",
            "file 'golden.jsonl' was not read",
        ),
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


# -- validation: sizes, golden sets -------------------------------------------------------


def large_smoke(times: int) -> dict[str, Any]:
    """A smoke request whose body repeats one iris flower `times` times."""
    return {
        "name": "large",
        "path": "/predict",
        "json": {"instances": [[5.1, 3.5, 1.4, 0.2]]},
        "repeat": {"field": "instances", "times": times},
    }


def test_new_validation_defaults() -> None:
    """The seed platform's 1.5 MB request limit, a minute of warm-up, no golden set."""
    validation = parse_spec({"name": "m", "image": "r.io/p/m"}).validation
    assert validation.max_request_bytes == 1_500_000
    assert (validation.warmup_seconds, validation.retry_seconds) == (60.0, 5.0)
    assert validation.golden is None


def test_smoke_body_over_the_request_limit_is_refused_at_register() -> None:
    """The generated body is measured as sent; over max_request_bytes is refused, naming both."""
    per_flower = len(b"[5.1,3.5,1.4,0.2],")
    one = len(b'{"instances":[[5.1,3.5,1.4,0.2]]}')
    times = (1_500_000 - one) // per_flower + 1  # the most that fit
    spec = parse_spec(iris_spec(validation={"requests": [large_smoke(times)]}))
    size = len(spec.validation.requests[0].body() or b"")
    assert 1_500_000 - per_flower < size <= 1_500_000
    message = errors_of(iris_spec(validation={"requests": [large_smoke(times + 1)]}))
    assert message.splitlines()[1] == (
        f"  validation.requests.0.json: the request body (repeated {times + 1:,} times) is "
        f"{size + per_flower:,} bytes, over validation.max_request_bytes (1,500,000)"
    )
    # A smaller configured limit applies to inline bodies too.
    message = errors_of(
        iris_spec(
            validation={"max_request_bytes": 10, "requests": [{"name": "p", "json": [1] * 9}]}
        )
    )
    assert "validation.requests.0.json: the request body is 19 bytes, over" in message


def test_validation_document_round_trips_with_the_new_fields() -> None:
    """Schema, headers, repeat and an inline golden set survive the stored document."""
    spec = parse_spec(
        iris_spec(
            validation={
                "warmup_seconds": 30,
                "requests": [
                    {
                        **large_smoke(10),
                        "expect": {
                            "schema": {"type": "object"},
                            "headers": {"Content-Type": {"regex": "application/json.*"}},
                        },
                    }
                ],
                "golden": {**GOLDEN, "fields": {"predictions": {"tolerance": 0.5}}},
            }
        )
    )
    document = spec.to_document()
    assert document["validation"]["requests"][0]["repeat"] == {"field": "instances", "times": 10}
    assert document["validation"]["requests"][0]["expect"]["schema"] == {"type": "object"}
    assert ServiceSpec.model_validate(document) == spec
    golden = spec.validation.golden
    assert golden is not None
    [rule] = golden.rules()
    assert (rule.path, rule.tolerance) == (("predictions",), 0.5)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("predictions", ("predictions",)),
        ("$.predictions", ("predictions",)),
        ("$.output.scores[0]", ("output", "scores", 0)),
        ("output.scores", ("output", "scores")),
    ],
)
def test_field_paths(text: str, path: tuple[Any, ...]) -> None:
    """Compared fields are plain names or `$.`-paths with list indices."""
    assert parse_field_path(text) == path


def write_service(folder: Path, golden: str) -> Path:
    """A spec file in `folder` whose validation holds the given `golden:` YAML block."""
    spec = folder / "service.yaml"
    spec.write_text(
        "name: iris\nimage: r.io/p/iris\nvalidation:\n  golden:\n"
        + "".join(f"    {line}\n" for line in golden.strip().splitlines())
    )
    return spec


def test_golden_file_is_read_relative_to_the_spec_and_embedded(tmp_path: Path) -> None:
    """`file` is resolved beside the spec; its lines become the stored requests."""
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "g.jsonl").write_text(
        '{"json": {"instances": [[5.1, 3.5, 1.4, 0.2]]}}\n'
        "\n"
        '{"name": "health", "method": "GET", "path": "/healthz"}\n'
    )
    spec = load_spec(
        write_service(tmp_path, "file: sets/g.jsonl\nfields: {predictions: exact}\npath: /predict")
    )
    golden = spec.validation.golden
    assert golden is not None and golden.file == "sets/g.jsonl"
    assert [(r.name, r.method, r.path) for r in golden.requests] == [
        (None, None, None),
        ("health", "GET", "/healthz"),
    ]
    document = spec.to_document()["validation"]["golden"]
    assert document["requests"][0]["json"] == {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    # The stored spec needs the file no more.
    (tmp_path / "sets" / "g.jsonl").unlink()
    assert ServiceSpec.model_validate(spec.to_document()) == spec


def test_golden_file_problems_name_the_field_and_the_line(tmp_path: Path) -> None:
    """Bad lines are reported with their numbers; other spec errors are still listed."""
    (tmp_path / "g.jsonl").write_text('{"json": 1}\nnot json\n{"jsn": 2}\n[1]\n')
    spec_file = write_service(tmp_path, "file: g.jsonl\nfields: {predictions: exact}")
    spec_file.write_text(spec_file.read_text() + "steps: [50, 10]\n")
    with pytest.raises(SpecError) as caught:
        load_spec(spec_file)
    lines = str(caught.value).splitlines()[1:]
    assert lines[0].startswith(
        "  validation.golden.file: g.jsonl line 2: not JSON: Expecting value"
    )
    assert (
        lines[1] == "  validation.golden.file: g.jsonl line 3: jsn: Extra inputs are not permitted"
    )
    assert lines[2].startswith("  validation.golden.file: g.jsonl line 4: line: Input should be")
    assert lines[3].startswith("  steps: Value error, steps must be strictly increasing")


@pytest.mark.parametrize(
    ("golden", "problem"),
    [
        ("file: nowhere.jsonl\nfields: {p: exact}", "cannot read"),
        ("file: empty.jsonl\nfields: {p: exact}", "empty.jsonl holds no requests"),
        (
            "file: https://x/g.jsonl\nfields: {p: exact}",
            "only paths (relative to the spec file) and gs:// URIs are supported",
        ),
        ("file: gs://b/g.jsonl\nfields: {p: exact}", "no reader for gs:// URIs here"),
        (
            "file: empty.jsonl\nrequests: [{json: 1}]\nfields: {p: exact}",
            "give either `file` or inline `requests`, not both",
        ),
    ],
)
def test_golden_file_cannot_be_used(tmp_path: Path, golden: str, problem: str) -> None:
    """Each unusable golden file is refused under validation.golden.file."""
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(SpecError) as caught:
        load_spec(write_service(tmp_path, golden))
    assert "validation.golden.file: " in str(caught.value) and problem in str(caught.value)


def test_golden_file_from_a_uri_reader(tmp_path: Path) -> None:
    """A gs:// file is read by the reader the caller passes (the CLI's storage client)."""
    uris: list[str] = []

    def read(uri: str) -> bytes:
        uris.append(uri)
        return b'{"json": {"instances": [[1, 1, 1, 1]]}}\n'

    spec = load_spec(
        write_service(tmp_path, "file: gs://b/g.jsonl\nfields: {p: exact}"), read_uri=read
    )
    assert uris == ["gs://b/g.jsonl"]
    assert spec.validation.golden is not None and len(spec.validation.golden.requests) == 1


def test_golden_file_too_large_or_too_many(tmp_path: Path) -> None:
    """Bounds are checked on what would be embedded, with the Firestore reason."""
    (tmp_path / "many.jsonl").write_text('{"json": [1]}\n' * 1001)
    with pytest.raises(SpecError, match=r"validation.golden.requests: .*1,001 golden requests"):
        load_spec(write_service(tmp_path, "file: many.jsonl\nfields: {p: exact}"))
    (tmp_path / "huge.jsonl").write_text(('{"json": "' + "x" * 1000 + '"}\n') * 1100)
    with pytest.raises(SpecError, match=r"validation.golden.file: huge.jsonl is 1,114,300 bytes"):
        load_spec(write_service(tmp_path, "file: huge.jsonl\nfields: {p: exact}"))


def test_stored_spec_must_fit_a_firestore_document() -> None:
    """Inline bodies that would make the stored spec too large are refused."""
    requests = [{"name": f"r{i}", "json": "x" * 200_000} for i in range(5)]
    message = errors_of(iris_spec(validation={"requests": requests}))
    assert "(top level): the stored spec would be 1,00" in message and "Firestore" in message


def test_the_example_iris_spec_embeds_its_golden_set() -> None:
    """examples/iris/service.yaml loads with its golden set embedded."""
    spec = load_spec(Path(__file__).resolve().parents[2] / "examples" / "iris" / "service.yaml")
    golden = spec.validation.golden
    assert golden is not None and golden.file == "golden.jsonl" and golden.requests


# -- credentials never written into a spec -----------------------------------------------------


@pytest.mark.parametrize(
    ("header", "where"),
    [
        ("Authorization", "requests"),
        ("proxy-authorization", "requests"),
        ("Cookie", "requests"),
        ("X-Api-Key", "requests"),
        ("X-Auth-Token", "golden"),
        ("X-Secret", "golden"),
    ],
)
def test_a_request_header_carrying_a_credential_is_refused_naming_the_field(
    header: str, where: str
) -> None:
    """A smoke or golden request's credential header: refused, the field and header named, the
    value never echoed (specs are stored in Firestore and shown by the read API)."""
    value = "Bearer plantedValue-4f2a9c"
    request: dict[str, Any] = {"json": {"instances": [[1]]}, "headers": {header: value}}
    if where == "requests":
        validation: dict[str, Any] = {"requests": [{"name": "p", **request}]}
        field = "validation.requests.0.headers"
    else:
        validation = {"golden": {**GOLDEN, "requests": [request]}}
        field = "validation.golden.requests.0.headers"
    message = errors_of(iris_spec(validation=validation))
    assert f"{field}: Value error, {header}: a header carrying a credential" in message
    assert "plantedValue" not in message


def test_ordinary_request_headers_are_kept() -> None:
    """Headers that carry no credential (content type, tracing, a key-less X-Keyboard) still pass."""
    headers = {"Content-Type": "application/json", "X-Request-Id": "abc", "X-Keyboard": "qwerty"}
    validation = {"requests": [{"name": "p", "headers": headers}]}
    spec = parse_spec(iris_spec(validation=validation))
    assert spec.validation.requests[0].headers == headers
