"""Knative Serving's admission webhooks: defaulting and validation of Services, Configurations,
Routes and Revisions (traffic rules, templates, bring-your-own revision names)."""

from __future__ import annotations

import json
import re
from typing import Any

from local.kube import errors
from local.kube.durations import parse_go_duration
from local.kube.errors import FieldError
from local.kube.resources import KNATIVE_GROUP, ResourceType
from local.kube.validation import dns1035_label_errors

Obj = dict[str, Any]

PROGRESS_DEADLINE_ANNOTATION = "serving.knative.dev/progress-deadline"
DEFAULT_PROGRESS_DEADLINE_SECONDS = 120.0
MAX_TIMEOUT_SECONDS = 600
MIN_SCALE_ANNOTATION = "autoscaling.knative.dev/min-scale"
MAX_SCALE_ANNOTATION = "autoscaling.knative.dev/max-scale"
_INTEGER_ANNOTATIONS = (
    MIN_SCALE_ANNOTATION,
    MAX_SCALE_ANNOTATION,
    "autoscaling.knative.dev/initial-scale",
)
TARGET_ANNOTATION = "autoscaling.knative.dev/target"
METRIC_ANNOTATION = "autoscaling.knative.dev/metric"
RETENTION_ANNOTATION = "autoscaling.knative.dev/scale-to-zero-pod-retention-period"
# The metrics of Knative's default autoscaler class (KPA); the HPA class takes cpu and memory.
_KPA_METRICS = ("concurrency", "rps")
_HPA_METRICS = ("cpu", "memory")
CLASS_ANNOTATION = "autoscaling.knative.dev/class"
HPA_CLASS = "hpa.autoscaling.knative.dev"
# resource.Quantity's grammar: sign, digits with an optional fraction, then a suffix.
_QUANTITY = re.compile(
    r"^[+-]?(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$"
)


# ---------------------------------------------------------------- defaulting


def _default_revision_spec(spec: Obj) -> None:
    """Fill what Knative's defaulting webhook fills in a revision spec."""
    spec.setdefault("containerConcurrency", 0)
    spec.setdefault("timeoutSeconds", 300)
    spec.setdefault("enableServiceLinks", False)
    containers = spec.get("containers")
    if not isinstance(containers, list):
        return
    for index, container in enumerate(containers):
        if not isinstance(container, dict):
            continue
        if not container.get("name"):
            container["name"] = (
                "user-container" if len(containers) == 1 else f"user-container-{index}"
            )
        container.setdefault("resources", {})
        serving = len(containers) == 1 or container.get("ports")
        if serving and "readinessProbe" not in container:
            container["readinessProbe"] = {"successThreshold": 1, "tcpSocket": {"port": 0}}


def _default_template(holder: Obj) -> None:
    template = holder.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        _default_revision_spec(template["spec"])


def _default_service_traffic(spec: Obj) -> None:
    traffic = spec.get("traffic")
    if not traffic:
        spec["traffic"] = [{"latestRevision": True, "percent": 100}]
        return
    if not isinstance(traffic, list):
        return
    for target in traffic:
        if isinstance(target, dict) and target.get("latestRevision") is None:
            # Knative: an entry without revisionName follows the latest revision.
            target["latestRevision"] = not target.get("revisionName")


def apply_defaults(kind: str, obj: Obj) -> None:
    """Mutate ``obj`` as Knative's defaulting webhook does (only well-formed parts are touched)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if kind == "Service":
        _default_template(spec)
        _default_service_traffic(spec)
    elif kind == "Configuration":
        _default_template(spec)
    elif kind == "Revision":
        _default_revision_spec(spec)


# ---------------------------------------------------------------- validation


def _annotation_errors(path: str, annotations: Any) -> list[FieldError]:
    if not isinstance(annotations, dict):
        return []
    found = []
    deadline = annotations.get(PROGRESS_DEADLINE_ANNOTATION)
    if deadline is not None:
        field = f"{path}[{PROGRESS_DEADLINE_ANNOTATION}]"
        try:
            seconds = parse_go_duration(str(deadline))
        except ValueError:
            found.append(errors.invalid(field, deadline, "must be a duration such as 30s or 2m"))
        else:
            if seconds <= 0:
                found.append(
                    errors.invalid(
                        field, deadline, "progress-deadline=" + str(deadline) + " must be positive"
                    )
                )
    for name in _INTEGER_ANNOTATIONS:
        value = annotations.get(name)
        if value is not None and not (isinstance(value, str) and value.isdigit()):
            found.append(
                errors.invalid(f"{path}[{name}]", value, "expected a non-negative integer")
            )
    low, high = (str(annotations.get(n, "")) for n in (MIN_SCALE_ANNOTATION, MAX_SCALE_ANNOTATION))
    # Knative: max-scale 0 means unbounded.
    if low.isdigit() and high.isdigit() and int(high) != 0 and int(high) < int(low):
        found.append(
            errors.invalid(
                f"{path}[{MAX_SCALE_ANNOTATION}]",
                high,
                f"max-scale={high} is less than min-scale={low}",
            )
        )
    return found + _autoscaler_errors(path, annotations)


def _autoscaler_errors(path: str, annotations: Obj) -> list[FieldError]:
    """Knative's checks of the autoscaler's metric, target and scale-to-zero retention."""
    found = []
    metric = annotations.get(METRIC_ANNOTATION)
    allowed = _HPA_METRICS if annotations.get(CLASS_ANNOTATION) == HPA_CLASS else _KPA_METRICS
    if metric is not None and metric not in allowed:
        found.append(
            errors.invalid(
                f"{path}[{METRIC_ANNOTATION}]", metric, f"expected one of {', '.join(allowed)}"
            )
        )
    target = annotations.get(TARGET_ANNOTATION)
    if target is not None:
        try:
            number = float(target)
        except (TypeError, ValueError):
            number = -1.0
        if not number >= 0.01:
            found.append(
                errors.invalid(
                    f"{path}[{TARGET_ANNOTATION}]",
                    target,
                    f"target {target} should be at least 0.01",
                )
            )
    retention = annotations.get(RETENTION_ANNOTATION)
    if retention is not None:
        try:
            seconds = parse_go_duration(str(retention))
        except ValueError:
            seconds = -1.0
        if seconds < 0:
            found.append(
                errors.invalid(
                    f"{path}[{RETENTION_ANNOTATION}]", retention, "must be a non-negative duration"
                )
            )
    return found


def _resource_errors(where: str, resources: Any) -> list[FieldError]:
    """Container resources: quantities Kubernetes can parse, never negative."""
    if resources is None:
        return []
    if not isinstance(resources, dict):
        return [errors.invalid(where, resources, "must be an object")]
    found = []
    for part in ("requests", "limits"):
        amounts = resources.get(part)
        if amounts is None:
            continue
        if not isinstance(amounts, dict):
            found.append(errors.invalid(f"{where}.{part}", amounts, "must be an object"))
            continue
        for name, value in amounts.items():
            text = (
                str(value)
                if isinstance(value, int | float) and not isinstance(value, bool)
                else value
            )
            if not isinstance(text, str) or not _QUANTITY.match(text):
                found.append(
                    errors.invalid(
                        f"{where}.{part}[{name}]",
                        value,
                        "quantities must match the regular expression "
                        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    )
                )
            elif text.startswith("-"):
                found.append(
                    errors.invalid(
                        f"{where}.{part}[{name}]", value, "must be greater than or equal to 0"
                    )
                )
    return found


def revision_spec_errors(path: str, spec: Any) -> list[FieldError]:
    """Problems with a revision spec (``spec`` of a Revision, ``spec.template.spec`` of others)."""
    if not isinstance(spec, dict):
        return [errors.required(path, "missing field(s)")]
    found: list[FieldError] = []
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [errors.required(f"{path}.containers", "missing field(s)")]
    port_count = 0
    for index, container in enumerate(containers):
        where = f"{path}.containers[{index}]"
        if not isinstance(container, dict):
            found.append(errors.invalid(where, container, "must be an object"))
            continue
        image = container.get("image")
        if not image:
            found.append(errors.required(f"{where}.image", "missing field(s)"))
        elif not isinstance(image, str) or any(c.isspace() for c in image):
            found.append(errors.invalid(f"{where}.image", image, "must be an image reference"))
        env = container.get("env")
        if env is not None and not isinstance(env, list):
            found.append(errors.invalid(f"{where}.env", env, "must be a list"))
        for env_index, variable in enumerate(env if isinstance(env, list) else []):
            if not isinstance(variable, dict) or not variable.get("name"):
                found.append(errors.required(f"{where}.env[{env_index}].name", "missing field(s)"))
            elif "value" in variable and not isinstance(variable["value"], str):
                found.append(
                    errors.invalid(
                        f"{where}.env[{env_index}].value", variable["value"], "must be a string"
                    )
                )
        found += _resource_errors(f"{where}.resources", container.get("resources"))
        ports = container.get("ports")
        if isinstance(ports, list):
            port_count += len(ports)
    if port_count > 1:
        found.append(
            errors.invalid(f"{path}.containers", port_count, "more than one container port is set")
        )
    timeout = spec.get("timeoutSeconds")
    if timeout is not None and (
        not isinstance(timeout, int)
        or isinstance(timeout, bool)
        or not 0 <= timeout <= MAX_TIMEOUT_SECONDS
    ):
        found.append(
            errors.invalid(
                f"{path}.timeoutSeconds",
                timeout,
                f"expected 0 <= {timeout} <= {MAX_TIMEOUT_SECONDS}",
            )
        )
    concurrency = spec.get("containerConcurrency")
    if concurrency is not None and (
        not isinstance(concurrency, int)
        or isinstance(concurrency, bool)
        or not 0 <= concurrency <= 1000
    ):
        found.append(
            errors.invalid(
                f"{path}.containerConcurrency", concurrency, f"expected 0 <= {concurrency} <= 1000"
            )
        )
    return found


def template_errors(path: str, template: Any, owner_name: str) -> list[FieldError]:
    """Problems with a template: its revision spec, annotations and BYO revision name."""
    if not isinstance(template, dict):
        return [errors.required(path, "missing field(s)")]
    found: list[FieldError] = []
    metadata = template.get("metadata") or {}
    if not isinstance(metadata, dict):
        return [errors.invalid(f"{path}.metadata", metadata, "must be an object")]
    name = metadata.get("name")
    if name:
        prefix = f"{owner_name}-"
        if not isinstance(name, str) or not name.startswith(prefix):
            found.append(
                errors.invalid(f"{path}.metadata.name", name, f'must have prefix "{prefix}"')
            )
        else:
            for problem in dns1035_label_errors(name):
                found.append(errors.invalid(f"{path}.metadata.name", name, problem))
    found += _annotation_errors(f"{path}.metadata.annotations", metadata.get("annotations"))
    found += revision_spec_errors(f"{path}.spec", template.get("spec"))
    return found


def _is_percent(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def traffic_errors(path: str, traffic: Any, in_route: bool) -> list[FieldError]:
    """Knative's traffic rules: one target kind per entry, percents 0..100 summing to 100, unique tags.

    In a Service an entry names ``revisionName`` xor ``latestRevision: true``; in a Route
    ``revisionName`` xor ``configurationName``.
    """
    if traffic is None:
        return []
    if not isinstance(traffic, list):
        return [errors.invalid(path, traffic, "must be a list of traffic targets")]
    found: list[FieldError] = []
    total = 0
    tags: dict[str, int] = {}
    for index, target in enumerate(traffic):
        where = f"{path}[{index}]"
        if not isinstance(target, dict):
            found.append(errors.invalid(where, target, "must be an object"))
            continue
        revision = target.get("revisionName")
        configuration = target.get("configurationName")
        latest = target.get("latestRevision")
        if latest is not None and not isinstance(latest, bool):
            found.append(errors.invalid(f"{where}.latestRevision", latest, "must be a boolean"))
        if in_route:
            if bool(revision) == bool(configuration):
                detail = (
                    "expected exactly one, got both"
                    if revision
                    else "expected exactly one, got neither"
                )
                found.append(
                    errors.invalid(
                        f"{where}.revisionName", revision, f"{detail}: {where}.configurationName"
                    )
                )
            if latest is True and not configuration:
                found.append(
                    errors.invalid(
                        f"{where}.latestRevision",
                        latest,
                        "may not set latestRevision without configurationName",
                    )
                )
        else:
            if configuration:
                found.append(
                    errors.forbidden(f"{where}.configurationName", "must not set the field(s)")
                )
            if revision and latest is True:
                found.append(
                    errors.invalid(
                        f"{where}.latestRevision",
                        latest,
                        f'expected exactly one, got both: may not set revisionName "{revision}" when latestRevision is true',
                    )
                )
            if not revision and latest is False:
                found.append(
                    errors.invalid(
                        f"{where}.latestRevision",
                        latest,
                        "expected exactly one, got neither: may not set latestRevision=false without a revisionName",
                    )
                )
        if revision is not None and (
            not isinstance(revision, str) or dns1035_label_errors(revision)
        ):
            found.append(
                errors.invalid(f"{where}.revisionName", revision, "must be a valid revision name")
            )
        percent = target.get("percent")
        if percent is not None:
            if not _is_percent(percent):
                found.append(errors.invalid(f"{where}.percent", percent, "must be an integer"))
            elif not 0 <= percent <= 100:
                found.append(
                    errors.invalid(f"{where}.percent", percent, f"expected 0 <= {percent} <= 100")
                )
            else:
                total += percent
        tag = target.get("tag")
        if tag is not None:
            if not isinstance(tag, str) or dns1035_label_errors(tag):
                found.append(errors.invalid(f"{where}.tag", tag, "must be a DNS-1035 label"))
            elif tag in tags:
                found.append(
                    errors.duplicate(
                        f"{where}.tag",
                        tag,
                        f'Multiple definitions for "{tag}": {path}[{tags[tag]}].tag, {where}.tag',
                    )
                )
            else:
                tags[tag] = index
    if traffic and not found and total != 100:
        found.append(errors.invalid(path, total, f"Traffic targets sum to {total}, want 100"))
    return found


def _describe_changes(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(set(old) | set(new)):
            lines += _describe_changes(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        lines = []
        for index, (before, after) in enumerate(zip(old, new, strict=True)):
            lines += _describe_changes(before, after, f"{path}[{index}]")
        return lines
    if old == new:
        return []
    return [f"{path}: -{json.dumps(old)} +{json.dumps(new)}"]


def byo_name_errors(path: str, old_template: Any, new_template: Any) -> list[FieldError]:
    """Knative refuses a template change that keeps the same BYO revision name."""
    if not isinstance(old_template, dict) or not isinstance(new_template, dict):
        return []
    old_name = (old_template.get("metadata") or {}).get("name")
    new_name = (new_template.get("metadata") or {}).get("name")
    if not new_name or old_name != new_name:
        return []
    changes = _describe_changes(old_template, new_template)
    if not changes:
        return []
    return [
        errors.invalid(
            f"{path}.metadata.name",
            new_name,
            "Saw the following changes without a name change (-old +new): " + "; ".join(changes),
        )
    ]


def validate(kind: str, obj: Obj, old: Obj | None) -> list[FieldError]:
    """All Knative webhook errors for a create (``old`` None) or an update of ``obj``."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [errors.required("spec", "missing field(s)")]
    found: list[FieldError] = []
    if kind in ("Service", "Configuration"):
        found += template_errors("spec.template", spec.get("template"), name)
        if old is not None:
            found += byo_name_errors(
                "spec.template", (old.get("spec") or {}).get("template"), spec.get("template")
            )
    if kind == "Service":
        found += traffic_errors("spec.traffic", spec.get("traffic"), in_route=False)
    elif kind == "Route":
        found += traffic_errors("spec.traffic", spec.get("traffic"), in_route=True)
    elif kind == "Revision":
        found += revision_spec_errors("spec", spec)
        if old is not None and old.get("spec") != spec:
            found.append(errors.forbidden("spec", "Immutable fields changed (-old +new)"))
    return found


def progress_deadline_seconds(annotations: Any) -> float:
    """The revision's progress deadline from its annotation, or Knative's default (120 s)."""
    if isinstance(annotations, dict) and annotations.get(PROGRESS_DEADLINE_ANNOTATION):
        try:
            seconds = parse_go_duration(str(annotations[PROGRESS_DEADLINE_ANNOTATION]))
        except ValueError:
            return DEFAULT_PROGRESS_DEADLINE_SECONDS
        if seconds > 0:
            return seconds
    return DEFAULT_PROGRESS_DEADLINE_SECONDS


def admit(resource: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
    """Admission plugin for the registry: default, then validate, Knative kinds only."""
    if resource.group != KNATIVE_GROUP:
        return []
    apply_defaults(resource.kind, obj)
    return validate(resource.kind, obj, old)
