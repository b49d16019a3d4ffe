"""The service spec a team registers (`hekaton register FILE`): what to deploy and how to judge it."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.analysis.section import AnalysisSpec
from shared.approval_spec import ApprovalSpec

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class SpecError(ValueError):
    """A service spec that cannot be used; the message names every offending field."""


class ExpectedResponse(BaseModel):
    """What a smoke request must get back."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(default=200, ge=100, le=599)
    # Each key must be present in the JSON response with this value (nested objects match as subsets).
    json_fields: dict[str, Any] = Field(default_factory=dict, alias="json")
    # Relative tolerance for numbers inside json_fields.
    tolerance: float = Field(default=0.0, ge=0)
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_bytes: int | None = Field(default=None, gt=0)


class SmokeRequest(BaseModel):
    """One request sent to the candidate through its tag URL."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    method: str = Field(default="POST", pattern="^(GET|POST|PUT|PATCH|DELETE|HEAD)$")
    path: str = Field(default="/", pattern="^/")
    json_body: Any = Field(default=None, alias="json")
    headers: dict[str, str] = Field(default_factory=dict)
    expect: ExpectedResponse = Field(default_factory=ExpectedResponse)


class Validation(BaseModel):
    """The smoke test run before any user traffic reaches the candidate."""

    model_config = ConfigDict(extra="forbid")

    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    requests: list[SmokeRequest] = Field(default_factory=list)


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
    env: dict[str, str] = Field(default_factory=dict)
    min_scale: int | None = Field(default=None, ge=0)
    max_scale: int | None = Field(default=None, ge=1)
    validation: Validation = Field(default_factory=Validation)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec)

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

    @model_validator(mode="after")
    def _scale_bounds(self) -> ServiceSpec:
        if (
            self.min_scale is not None
            and self.max_scale is not None
            and self.min_scale > self.max_scale
        ):
            raise ValueError("min_scale must not exceed max_scale")
        return self

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
    try:
        return ServiceSpec.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SpecError(f"{origin} is invalid:\n" + "\n".join(lines)) from None


def load_spec(path: Path) -> ServiceSpec:
    """Read and validate a YAML spec file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read service spec {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML: {exc}") from exc
    return parse_spec(data, origin=str(path))
