"""The service spec a team registers (`hekaton register FILE`): what to deploy and how to judge it."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.analysis.section import AnalysisSpec
from shared.approval_spec import ApprovalSpec
from shared.auth_spec import AuthSpec
from shared.scaling_spec import EnvValue, Resources, Scaling, check_env, move_top_level_scale

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class SpecError(ValueError):
    """A service spec that cannot be used; the message names every offending field."""


# The seed platform's request size limit ("1.5 MB"), in bytes: smoke requests above it are refused.
DEFAULT_MAX_REQUEST_BYTES = 1_500_000
# Golden requests are embedded into the stored spec (the service record, and the snapshot a
# rollout keeps of it), and Firestore documents hold at most 1 MiB: these bound what is embedded.
GOLDEN_MAX_REQUESTS = 1_000
GOLDEN_MAX_BYTES = 512 * 1024
MAX_SPEC_DOCUMENT_BYTES = 900_000
_FIRESTORE_NOTE = "golden requests are embedded into the stored spec, and a Firestore document holds at most 1 MiB"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Request headers that carry credentials: a spec is stored in Firestore and shown by the read API,
# so a credential written into it would leak; hekaton adds its own token at call time instead.
_CREDENTIAL_HEADER = re.compile(
    r"authorization|cookie|token|secret|password|passwd|credential|session|api[-_]?key|"
    r"(^|[-_])key($|[-_])",
    re.I,
)
_METHODS = "^(GET|POST|PUT|PATCH|DELETE|HEAD)$"


def encode_json(value: Any) -> bytes:
    """The bytes hekaton sends for a JSON body (compact, UTF-8): what the size limits measure."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@dataclass(frozen=True)
class HeaderRule:
    """One expected response header: its lower-cased name and an exact value or a full-match regex."""

    name: str
    exact: str | None = None
    regex: str | None = None


class ExpectedResponse(BaseModel):
    """What a smoke request must get back."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(default=200, ge=100, le=599)
    # Each key must be present in the JSON response with this value (nested objects match as subsets).
    json_fields: dict[str, Any] = Field(default_factory=dict, alias="json")
    # Relative tolerance for numbers inside json_fields.
    tolerance: float = Field(default=0.0, ge=0)
    # A JSON Schema the JSON response must satisfy (draft 2020-12 unless it names its `$schema`).
    json_schema: dict[str, Any] | bool | None = Field(default=None, alias="schema")
    # Response headers, names case-insensitive: "exact value" or {regex: "full-match pattern"}.
    headers: dict[str, Any] = Field(default_factory=dict)
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_bytes: int | None = Field(default=None, gt=0)

    @field_validator("json_schema")
    @classmethod
    def _is_a_schema(cls, value: dict[str, Any] | bool | None) -> dict[str, Any] | bool | None:
        if value is None:
            return value
        validator = jsonschema.validators.validator_for(value, default=Draft202012Validator)
        try:
            validator.check_schema(value)  # type: ignore[arg-type]  # true/false are schemas too
        except jsonschema.SchemaError as exc:
            where = exc.json_path if exc.json_path != "$" else "the schema"
            raise ValueError(f"not a valid JSON Schema: {where}: {exc.message}") from None
        return value

    @field_validator("headers")
    @classmethod
    def _header_rules(cls, value: dict[str, Any]) -> dict[str, Any]:
        seen: set[str] = set()
        for name, rule in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if name.lower() in seen:
                raise ValueError(f"{name!r} is named twice (header names are case-insensitive)")
            seen.add(name.lower())
            if isinstance(rule, str):
                continue
            if not (isinstance(rule, dict) and set(rule) == {"regex"}) or not isinstance(
                rule["regex"], str
            ):
                raise ValueError(
                    f"{name}: expected a string (the exact value) or {{regex: PATTERN}}, got {rule!r}"
                )
            try:
                re.compile(rule["regex"])
            except re.error as exc:
                raise ValueError(
                    f"{name}: regex is not a valid regular expression: {exc}"
                ) from None
        return value

    def header_rules(self) -> list[HeaderRule]:
        """The expected headers, names lower-cased."""
        return [
            HeaderRule(name.lower(), exact=rule)
            if isinstance(rule, str)
            else HeaderRule(name.lower(), regex=rule["regex"])
            for name, rule in self.headers.items()
        ]


class Repeat(BaseModel):
    """A generated large body: the list at `json.<field>` repeated `times` times."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key: str = Field(alias="field", min_length=1)
    times: int = Field(ge=1, le=1_000_000)


def check_request_headers(headers: dict[str, str]) -> dict[str, str]:
    """Refuse a request header that would carry a credential (never echoing its value)."""
    for name in headers:
        if _CREDENTIAL_HEADER.search(name):
            raise ValueError(
                f"{name}: a header carrying a credential cannot be written into a spec (specs are "
                "stored and shown by the read API); remove it: hekaton sends its own token to a "
                "service with an `auth` section, and a model needing another credential should "
                "read it from a Kubernetes Secret in `env`"
            )
    return headers


class SmokeRequest(BaseModel):
    """One request sent to the candidate through its tag URL."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    method: str = Field(default="POST", pattern=_METHODS)
    path: str = Field(default="/", pattern="^/")
    json_body: Any = Field(default=None, alias="json")
    # Send a large payload without storing it: `repeat: {field: instances, times: 60000}`.
    repeat: Repeat | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    expect: ExpectedResponse = Field(default_factory=ExpectedResponse)

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        return check_request_headers(value)

    @model_validator(mode="after")
    def _repeatable(self) -> SmokeRequest:
        if self.repeat is not None:
            key = self.repeat.key
            items = self.json_body.get(key) if isinstance(self.json_body, dict) else None
            if not isinstance(items, list) or not items:
                raise ValueError(f"repeat needs a non-empty list at json.{key} to repeat")
        return self

    def body(self) -> bytes | None:
        """The encoded request body (repeated as `repeat` says), or None without `json`."""
        if self.json_body is None:
            return None
        if self.repeat is None:
            return encode_json(self.json_body)
        key, times = self.repeat.key, self.repeat.times
        return encode_json({**self.json_body, key: self.json_body[key] * times})


class GoldenRequest(BaseModel):
    """One line of a golden set: a request replayed against both stable and candidate."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1)
    method: str | None = Field(default=None, pattern=_METHODS)
    path: str | None = Field(default=None, pattern="^/")
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        return check_request_headers(value)

    def to_line(self) -> dict[str, Any]:
        """The request as written in the JSONL file (only the keys it sets)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


@dataclass(frozen=True)
class FieldRule:
    """How one field of the JSON answers is compared: exactly, or numbers within `tolerance`."""

    label: str  # as written in the spec, e.g. "$.predictions"
    path: tuple[str | int, ...]
    tolerance: float | None = None  # None: exact


class GoldenSet(BaseModel):
    """Golden-set agreement: requests replayed against stable and candidate, answers compared."""

    model_config = ConfigDict(extra="forbid")

    # Where the requests came from: a JSONL path relative to the spec file, or a gs:// URI. It is
    # read once, by load_spec (`hekaton register FILE`), and its requests embedded below.
    file: str | None = Field(default=None, min_length=1)
    requests: list[GoldenRequest] = Field(default_factory=list)
    method: str = Field(default="POST", pattern=_METHODS)  # for lines that name none
    path: str = Field(default="/", pattern="^/")  # for lines that name none
    # The parts of the JSON answer compared: {"$.predictions": "exact" | {tolerance: 0.01}}.
    fields: dict[str, Any] = Field(min_length=1)
    # Each compared field is a list with one item per instance; each item is one answer.
    batch: bool = False
    min_agreement: float = Field(default=0.95, ge=0, le=1)
    max_distance: float = Field(default=0.1, ge=0)
    max_requests: int | None = Field(default=None, ge=1, le=GOLDEN_MAX_REQUESTS)
    concurrency: int = Field(default=4, ge=1, le=32)
    timeout_seconds: float | None = Field(default=None, gt=0, le=300)

    @field_validator("fields")
    @classmethod
    def _field_rules(cls, value: dict[str, Any]) -> dict[str, Any]:
        for label, rule in value.items():
            try:
                parse_field_path(label)
            except ValueError as exc:
                raise ValueError(f"{label!r}: {exc}") from None
            if rule == "exact":
                continue
            tolerance = rule.get("tolerance") if isinstance(rule, dict) else None
            if (
                not isinstance(rule, dict)
                or set(rule) != {"tolerance"}
                or isinstance(tolerance, bool)
                or not isinstance(tolerance, int | float)
                or not tolerance >= 0
            ):
                raise ValueError(
                    f"{label}: expected 'exact' or {{tolerance: NUMBER >= 0}}, got {rule!r}"
                )
        return value

    @field_validator("requests")
    @classmethod
    def _bounded(cls, value: list[GoldenRequest]) -> list[GoldenRequest]:
        if len(value) > GOLDEN_MAX_REQUESTS:
            raise ValueError(
                f"{len(value):,} golden requests; at most {GOLDEN_MAX_REQUESTS:,} ({_FIRESTORE_NOTE})"
            )
        try:
            size = sum(len(encode_json(r.to_line())) + 1 for r in value)
        except ValueError as exc:
            raise ValueError(f"a golden request cannot be sent as JSON: {exc}") from None
        if size > GOLDEN_MAX_BYTES:
            raise ValueError(
                f"golden requests are {size:,} bytes; at most {GOLDEN_MAX_BYTES:,} (512 KiB: {_FIRESTORE_NOTE})"
            )
        return value

    @model_validator(mode="after")
    def _has_requests(self) -> GoldenSet:
        if not self.requests:
            where = f"file {self.file!r} was not read" if self.file else "no requests"
            raise ValueError(
                f"{where}: golden requests come from `file` (a JSONL file read when the spec is "
                "registered from its file, `hekaton register FILE`) or an inline `requests` list"
            )
        return self

    def rules(self) -> list[FieldRule]:
        """The compared fields, parsed."""
        return [
            FieldRule(
                label,
                parse_field_path(label),
                None if rule == "exact" else float(rule["tolerance"]),
            )
            for label, rule in self.fields.items()
        ]

    def selected(self) -> list[GoldenRequest]:
        """The requests one replay sends: the first `max_requests` (all by default)."""
        return self.requests[: self.max_requests] if self.max_requests else list(self.requests)


def parse_field_path(text: str) -> tuple[str | int, ...]:
    """`predictions`, `$.predictions`, `$.output.scores[0]` -> ("predictions",), ...; ValueError if not."""
    rest = text[1:] if text.startswith("$") else "." + text
    parts: list[str | int] = []
    for match in re.finditer(r"\.([^.\[\]]+)|\[(\d+)\]|(.)", rest):
        name, index, stray = match.groups()
        if stray is not None:
            raise ValueError("is not a field path like `predictions` or `$.output.scores[0]`")
        parts.append(name if name is not None else int(index))
    if not parts:
        raise ValueError("is not a field path like `predictions` or `$.output.scores[0]`")
    return tuple(parts)


class Validation(BaseModel):
    """The checks run before any user traffic reaches the candidate."""

    model_config = ConfigDict(extra="forbid")

    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # The largest request body a smoke request may send (checked at register time).
    max_request_bytes: int = Field(default=DEFAULT_MAX_REQUEST_BYTES, gt=0, le=32 * 1024 * 1024)
    # How long a cold candidate may stay unreachable (connection errors, 502/503/504) before
    # validation fails; 0 retries never. Retries start after `retry_seconds` and double.
    warmup_seconds: float = Field(default=60.0, ge=0, le=3_600)
    retry_seconds: float = Field(default=5.0, gt=0, le=600)
    requests: list[SmokeRequest] = Field(default_factory=list)
    golden: GoldenSet | None = None


class ServiceSpec(BaseModel):
    """A registered model API."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    namespace: str = "default"
    image: str = Field(
        min_length=1, description="image repository, e.g. us-docker.pkg.dev/p/r/model"
    )
    tag_filter: str = Field(default=".*", description="regular expression a pushed tag must match")
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100], min_length=1)
    bake_seconds: float = Field(default=60.0, ge=0, le=86_400)
    readiness_deadline_seconds: float = Field(default=300.0, gt=0, le=3_600)
    # Plain strings, or {secret: NAME, key: KEY} references to Kubernetes Secrets.
    env: dict[str, EnvValue] = Field(default_factory=dict)
    # Top-level min_scale/max_scale are still read, as scaling.min_scale/max_scale.
    scaling: Scaling = Field(default_factory=Scaling)
    resources: Resources = Field(default_factory=Resources)
    validation: Validation = Field(default_factory=Validation)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec)
    auth: AuthSpec | None = None  # endpoint auth (Istio policies); None: open

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _DNS_LABEL.match(value) or len(value) > 40:
            raise ValueError("must be a DNS-1035 label of at most 40 characters (a-z, 0-9, '-')")
        return value

    @field_validator("image")
    @classmethod
    def _repository_only(cls, value: str) -> str:
        if "@" in value or ":" in value.rsplit("/", 1)[-1]:
            raise ValueError("must be a repository without tag or digest")
        return value.rstrip("/")

    @field_validator("tag_filter")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression: {exc}") from exc
        return value

    @field_validator("steps")
    @classmethod
    def _increasing_percents(cls, value: list[int]) -> list[int]:
        if any(not 0 < step <= 100 for step in value):
            raise ValueError("every step must be a percent between 1 and 100")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("steps must be strictly increasing")
        return value

    @model_validator(mode="before")
    @classmethod
    def _scale_aliases(cls, data: Any) -> Any:
        return move_top_level_scale(data)

    @field_validator("env", mode="before")
    @classmethod
    def _env_secrets(cls, value: Any) -> Any:
        return check_env(value)

    @model_validator(mode="after")
    def _evidence_outlasts_bake(self) -> ServiceSpec:
        if self.analysis.enabled and self.analysis.max_wait_seconds < self.bake_seconds:
            raise ValueError(
                "analysis.max_wait_seconds must be at least bake_seconds: a step's evidence "
                "deadline cannot fall before its bake time ends"
            )
        return self

    def accepts_tag(self, tag: str | None) -> bool:
        """Whether a pushed tag passes the filter (a digest-only push passes only the match-all filter)."""
        if tag is None:
            return re.fullmatch(self.tag_filter, "") is not None or self.tag_filter in (".*", "")
        return re.fullmatch(self.tag_filter, tag) is not None

    def to_document(self) -> dict[str, Any]:
        """The spec as stored in Firestore (aliases, so it round-trips through YAML and JSON alike)."""
        return self.model_dump(mode="json", by_alias=True)


def parse_spec(data: Any, *, origin: str = "service spec") -> ServiceSpec:
    """Validate a decoded spec; raise SpecError listing `field.path: problem` for each error."""
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    spec, lines = _validate(data)
    if spec is None or lines:
        raise SpecError(f"{origin} is invalid:\n" + "\n".join(f"  {line}" for line in lines))
    return spec


ReadUri = Callable[[str], bytes]


def load_spec(path: Path, *, read_uri: ReadUri | None = None) -> ServiceSpec:
    """Read and validate a YAML spec file, embedding its golden set (`validation.golden.file`).

    A relative golden file is resolved against the spec file's folder; a `gs://` URI is read with
    `read_uri` (without one it is refused, naming the field). The requests are embedded into the
    spec, so a rollout never depends on the file again.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read service spec {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        return parse_spec(data, origin=str(path))
    data, problems = _embed_golden(data, path.parent, read_uri)
    spec, lines = _validate(data)
    lines = problems + lines
    if spec is None or lines:
        raise SpecError(f"{path} is invalid:\n" + "\n".join(f"  {line}" for line in lines))
    return spec


def _validate(data: dict[str, Any]) -> tuple[ServiceSpec | None, list[str]]:
    """The spec and the register-time problems (`field.path: problem` each)."""
    try:
        spec = ServiceSpec.model_validate(data)
    except ValidationError as exc:
        return None, [
            f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        ]
    return spec, _limits(spec)


def _limits(spec: ServiceSpec) -> list[str]:
    """Size limits that span fields: smoke bodies within max_request_bytes, the stored document."""
    problems = []
    limit = spec.validation.max_request_bytes
    for index, smoke in enumerate(spec.validation.requests):
        where = f"validation.requests.{index}.json"
        try:
            body = smoke.body()
        except ValueError as exc:
            problems.append(f"{where}: cannot be sent as JSON: {exc}")
            continue
        if body is not None and len(body) > limit:
            repeated = f" (repeated {smoke.repeat.times:,} times)" if smoke.repeat else ""
            problems.append(
                f"{where}: the request body{repeated} is {len(body):,} bytes, over "
                f"validation.max_request_bytes ({limit:,})"
            )
    golden = spec.validation.golden
    for index, request in enumerate(golden.requests if golden else []):
        size = len(encode_json(request.json_body))
        if size > limit:
            problems.append(
                f"validation.golden.requests.{index}.json: the request body is {size:,} bytes, "
                f"over validation.max_request_bytes ({limit:,})"
            )
    size = len(encode_json(spec.to_document()))
    if not problems and size > MAX_SPEC_DOCUMENT_BYTES:
        problems.append(
            f"(top level): the stored spec would be {size:,} bytes; at most "
            f"{MAX_SPEC_DOCUMENT_BYTES:,} fit a Firestore document (1 MiB): keep inline bodies "
            "and golden sets smaller (use `repeat` for large smoke bodies)"
        )
    return problems


def _embed_golden(
    data: dict[str, Any], base: Path, read_uri: ReadUri | None
) -> tuple[dict[str, Any], list[str]]:
    """`data` with `validation.golden.requests` read from `validation.golden.file`, and problems."""
    validation = data.get("validation")
    golden = validation.get("golden") if isinstance(validation, dict) else None
    if not isinstance(golden, dict) or golden.get("file") is None:
        return data, []
    assert isinstance(validation, dict)
    where = "validation.golden.file"
    file = golden["file"]
    if not isinstance(file, str) or not file:
        return data, []  # the model names the bad value
    if "requests" in golden:
        return data, [f"{where}: give either `file` or inline `requests`, not both"]
    raw, problem = _read_golden(file, base, read_uri)
    if raw is None:
        requests: list[Any] = []
        problems = [f"{where}: {problem}"]
    else:
        requests, problems = _parse_jsonl(raw, file)
        problems = [f"{where}: {p}" for p in problems]
    if problems:
        # Validate the rest without the golden set, so that every other error is listed too.
        rest = {k: v for k, v in validation.items() if k != "golden"}
        return {**data, "validation": rest}, problems
    embedded = {**golden, "requests": requests}
    return {**data, "validation": {**validation, "golden": embedded}}, []


def _read_golden(file: str, base: Path, read_uri: ReadUri | None) -> tuple[bytes | None, str]:
    if file.startswith("gs://"):
        if read_uri is None:
            return (
                None,
                f"cannot read {file}: no reader for gs:// URIs here; put the file beside the spec",
            )
        try:
            return read_uri(file), ""
        except Exception as exc:  # the reader's own errors, reported with the field
            return None, f"cannot read {file}: {exc}"
    if "://" in file:
        return None, f"{file}: only paths (relative to the spec file) and gs:// URIs are supported"
    target = Path(file) if Path(file).is_absolute() else base / file
    try:
        size = target.stat().st_size
        if size > 2 * GOLDEN_MAX_BYTES:
            return None, (
                f"{file} is {size:,} bytes; at most {GOLDEN_MAX_BYTES:,} of requests "
                f"(512 KiB: {_FIRESTORE_NOTE})"
            )
        return target.read_bytes(), ""
    except OSError as exc:
        return None, f"cannot read {target}: {exc.strerror}"


def _parse_jsonl(raw: bytes, file: str) -> tuple[list[Any], list[str]]:
    """The lines of a golden JSONL file (each checked as a GoldenRequest) and problems by line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [f"{file} is not UTF-8 text: {exc}"]
    requests, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            request = GoldenRequest.model_validate(item)
        except ValueError as exc:
            if isinstance(exc, ValidationError):
                details = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'line'}: {err['msg']}"
                    for err in exc.errors()
                )
            else:
                details = f"not JSON: {exc}"
            problems.append(f"{file} line {number}: {details}")
            continue
        requests.append(request.to_line())
    if len(problems) > 5:
        problems = [*problems[:5], f"... and {len(problems) - 5} more bad lines"]
    if not requests and not problems:
        problems.append(f"{file} holds no requests (one JSON object per line)")
    return requests, problems
