"""The `scaling`, `resources` and `env` parts of a service spec, and what they become in a Knative
revision template (autoscaling annotations, container resources, GPU node selector, secret refs)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

MIN_SCALE = "autoscaling.knative.dev/min-scale"
MAX_SCALE = "autoscaling.knative.dev/max-scale"
METRIC = "autoscaling.knative.dev/metric"
TARGET = "autoscaling.knative.dev/target"
RETENTION = "autoscaling.knative.dev/scale-to-zero-pod-retention-period"
GPU_RESOURCE = "nvidia.com/gpu"
# After a promotion the previous stable revision stays routed (0 %, tag `previous`) and warm this
# long by default, so a rollback in that window is instant; at most a day.
DEFAULT_WARM_SECONDS = 600
MAX_WARM_SECONDS = 86_400
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"

# GKE's `cloud.google.com/gke-accelerator` values for the NVIDIA GPUs GKE offers (the families
# Google's accelerator enums list: T4, P4, P100, V100, L4, A100 40/80 GB, H100 80 GB).
GKE_ACCELERATORS = frozenset(
    {
        "nvidia-tesla-t4",
        "nvidia-tesla-p4",
        "nvidia-tesla-p100",
        "nvidia-tesla-v100",
        "nvidia-l4",
        "nvidia-tesla-a100",
        "nvidia-a100-80gb",
        "nvidia-h100-80gb",
    }
)

# Kubernetes resource.Quantity: a decimal number, then a binary-SI, decimal-SI or exponent suffix.
_QUANTITY = re.compile(
    r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][-+]?[0-9]+)?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": "1e-9",
    "u": "1e-6",
    "m": "1e-3",
    "k": "1e3",
    "M": "1e6",
    "G": "1e9",
    "T": "1e12",
    "P": "1e15",
    "E": "1e18",
}
# Go durations as Knative parses them for the retention period: 30s, 1m30s, 1h.
_DURATION = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:h|m|s|ms))+$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|ms|m|s)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# Variable names whose literal value would be a secret in plain text.
_SECRET_LIKE = re.compile(
    r"PASSWORD|PASSWD|TOKEN|SECRET|(^|_)KEY($|_)|APIKEY|CREDENTIAL|PRIVATE", re.I
)


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity (`500m`, `1Gi`, `2`, `1e3`) as a number; ValueError if it is not one."""
    match = _QUANTITY.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"{text!r} is not a Kubernetes quantity (e.g. 500m or 2 for CPU, 512Mi or 1Gi for memory)"
        )
    number, suffix = Decimal(match["number"]), match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * Decimal(_DECIMAL[suffix])
    if suffix:
        return number * Decimal(10) ** int(suffix[1:])
    return number


def duration_seconds(text: str) -> float:
    """A Go duration (`30s`, `1m30s`) in seconds; ValueError if it is not one."""
    if not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1m30s")
    return sum(float(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


class Scaling(BaseModel):
    """How Knative scales the service's revisions (annotations on the revision template)."""

    model_config = ConfigDict(extra="forbid")

    min_scale: int | None = Field(default=None, ge=0)
    max_scale: int | None = Field(default=None, ge=1)
    # What the autoscaler targets per pod: in-flight requests (concurrency) or requests/s (rps).
    metric: Literal["concurrency", "rps"] | None = None
    target: float | None = Field(default=None, ge=0.01)
    # How long the last pod stays after traffic stops before scaling to zero (a Go duration).
    scale_to_zero_retention: str | None = None
    # Hard limit of requests in flight per pod (0: unlimited), the revision's containerConcurrency.
    container_concurrency: int | None = Field(default=None, ge=0, le=1000)
    # How long the previous stable revision stays warm after a promotion (None: the default, or 0
    # when min_scale is 0). Knative keeps a 0 % revision's pods only while it is routed and has a
    # min-scale, so a window needs min-scale >= 1 on every revision (set to 1 when min_scale is unset).
    keep_previous_warm_seconds: int | None = Field(default=None, ge=0, le=MAX_WARM_SECONDS)

    @field_validator("scale_to_zero_retention")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            duration_seconds(value)
        return value

    @field_validator("max_scale")
    @classmethod
    def _above_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_scale")
        if value is not None and low is not None and low > value:
            raise ValueError(
                f"min_scale must not exceed max_scale (scaling.min_scale {low} > max_scale {value})"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scaling:
        if self.metric is not None and self.target is None:
            raise ValueError(f"scaling.metric {self.metric!r} needs scaling.target (per pod)")
        if self.min_scale == 0 and self.keep_previous_warm_seconds:
            raise ValueError(
                f"scaling.keep_previous_warm_seconds ({self.keep_previous_warm_seconds}) needs "
                "scaling.min_scale of at least 1: with min_scale 0 Knative scales the previous "
                "revision to zero at 0 % traffic, so it would not be warm; set min_scale: 1, or "
                "keep_previous_warm_seconds: 0"
            )
        return self

    @property
    def warm_seconds(self) -> int:
        """How long the previous stable revision stays warm after a promotion (0: not kept)."""
        if self.keep_previous_warm_seconds is not None:
            return self.keep_previous_warm_seconds
        return 0 if self.min_scale == 0 else DEFAULT_WARM_SECONDS

    def annotations(self) -> dict[str, str]:
        """The Knative autoscaling annotations of the revision template."""
        found = {}
        if self.min_scale is not None:
            found[MIN_SCALE] = str(self.min_scale)
        elif self.warm_seconds:
            found[MIN_SCALE] = "1"  # what keeps the revision warm while it is routed at 0 %
        if self.max_scale is not None:
            found[MAX_SCALE] = str(self.max_scale)
        if self.target is not None:
            found[METRIC] = self.metric or "concurrency"
            found[TARGET] = f"{self.target:g}"
        if self.scale_to_zero_retention is not None:
            found[RETENTION] = self.scale_to_zero_retention
        return found


class Amounts(BaseModel):
    """CPU and memory as Kubernetes quantities."""

    model_config = ConfigDict(extra="forbid")

    cpu: str | None = None
    memory: str | None = None

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = f"{value:g}"
        if value is not None and parse_quantity(value) <= 0:
            raise ValueError(f"{value!r} must be above zero")
        return value

    def as_dict(self) -> dict[str, str]:
        """The set amounts, as Kubernetes writes them."""
        return {k: v for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v is not None}


class Gpu(BaseModel):
    """GPUs per pod: `nvidia.com/gpu` limits and the GKE accelerator node selector."""

    model_config = ConfigDict(extra="forbid")

    count: int | None = Field(default=None, ge=1, le=16)
    type: str | None = Field(default=None, validate_default=True)

    @field_validator("type")
    @classmethod
    def _known(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value not in GKE_ACCELERATORS:
            raise ValueError(
                f"unknown accelerator {value!r}; GKE names: {', '.join(sorted(GKE_ACCELERATORS))}"
            )
        if "count" not in info.data:
            return value  # the count is invalid: its own error says so
        count = info.data["count"]
        if count is not None and value is None:
            raise ValueError(
                f"required with resources.gpu.count ({count}): the GKE accelerator, e.g. nvidia-l4"
            )
        if value is not None and count is None:
            raise ValueError(f"{value!r} needs resources.gpu.count (GPUs per pod, e.g. 1)")
        return value


class Resources(BaseModel):
    """The serving container's resources."""

    model_config = ConfigDict(extra="forbid")

    limits: Amounts = Field(default_factory=Amounts)
    requests: Amounts = Field(default_factory=Amounts)
    gpu: Gpu | None = None

    @field_validator("requests")
    @classmethod
    def _within_limits(cls, value: Amounts, info: ValidationInfo) -> Amounts:
        limits = info.data.get("limits")
        for name in ("cpu", "memory"):
            request, limit = getattr(value, name), getattr(limits, name, None)
            if request is None or limit is None:
                continue
            if parse_quantity(request) > parse_quantity(limit):
                raise ValueError(
                    f"{name} {request} must not exceed resources.limits.{name} ({limit})"
                )
        return value

    def container(self) -> dict[str, Any]:
        """The container's `resources` block ({} when nothing is set)."""
        block: dict[str, Any] = {}
        if requests := self.requests.as_dict():
            block["requests"] = requests
        limits: dict[str, Any] = self.limits.as_dict()
        if self.gpu is not None and self.gpu.count:
            limits[GPU_RESOURCE] = str(self.gpu.count)
        if limits:
            block["limits"] = limits
        return block

    def node_selector(self) -> dict[str, str]:
        """GKE schedules GPU pods on nodes of the accelerator type."""
        if self.gpu is None or self.gpu.type is None:
            return {}
        return {ACCELERATOR_LABEL: self.gpu.type}

    def tolerations(self) -> list[dict[str, str]]:
        """GKE taints GPU nodes `nvidia.com/gpu=present:NoSchedule`."""
        if self.gpu is None or not self.gpu.count:
            return []
        return [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


class SecretRef(BaseModel):
    """An env value read from a Kubernetes Secret: `{secret: NAME, key: KEY}`."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(min_length=1, max_length=253, pattern=_SECRET_NAME.pattern)
    key: str = Field(min_length=1, max_length=253, pattern=_SECRET_KEY.pattern)

    def env_var(self, name: str) -> dict[str, Any]:
        """The container env entry."""
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": self.secret, "key": self.key}}}


EnvValue = str | SecretRef


def check_env(env: Any) -> Any:
    """Names are env var names; values strings or `{secret, key}`; a secret-looking name must take
    its value from a Secret. Messages never echo a value."""
    if not isinstance(env, dict):
        return env  # the model says what is expected
    checked: dict[str, EnvValue] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        if isinstance(value, dict):
            try:
                checked[name] = SecretRef.model_validate(value)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
                    for err in exc.errors()
                )
                raise ValueError(
                    f"{name}: a secret reference is {{secret: SECRET_NAME, key: KEY}} ({problems})"
                ) from None
            continue
        if not isinstance(value, str):
            raise ValueError(
                f"{name}: expected a string or {{secret: SECRET_NAME, key: KEY}}, "
                f"got {type(value).__name__}"
            )
        if value and _SECRET_LIKE.search(name):
            raise ValueError(
                f"{name} looks like a secret given in plain text; give it as a reference to a "
                f"Kubernetes Secret instead: `{name}: {{secret: SECRET_NAME, key: KEY}}` "
                "(secrets are never stored in Firestore or logged)"
            )
        checked[name] = value
    return checked


def env_vars(env: dict[str, EnvValue]) -> list[dict[str, Any]]:
    """The container env entries, sorted by name."""
    return [
        value.env_var(name) if isinstance(value, SecretRef) else {"name": name, "value": value}
        for name, value in sorted(env.items())
    ]


def move_top_level_scale(data: Any) -> Any:
    """Accept the older top-level `min_scale`/`max_scale` as aliases of `scaling.min_scale`/`max_scale`."""
    if not isinstance(data, dict) or not ({"min_scale", "max_scale"} & set(data)):
        return data
    data = dict(data)
    scaling = data.get("scaling")
    scaling = dict(scaling) if isinstance(scaling, dict) else scaling
    for name in ("min_scale", "max_scale"):
        if name not in data:
            continue
        value = data.pop(name)
        if value is None:
            continue
        if scaling is None:
            scaling = {}
        if isinstance(scaling, dict):
            if scaling.get(name) is not None:
                raise ValueError(
                    f"{name} is given twice (top level and scaling.{name}); keep scaling.{name}"
                )
            scaling[name] = value
    if scaling is not None:
        data["scaling"] = scaling
    return data
