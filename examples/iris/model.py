"""The Iris classifier: petal thresholds from the classic decision tree, and input parsing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

SPECIES = ("setosa", "versicolor", "virginica")
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
MAX_INSTANCES = 100_000

Measurements = tuple[float, float, float, float]


class BadInput(ValueError):
    """A request body that cannot be classified; the message says what is wrong."""


def classify(measurements: Measurements, boundary_shift: float = 0.0) -> str:
    """The species for one flower (sepal length, sepal width, petal length, petal width in cm).

    `boundary_shift` (cm) moves both versicolor/virginica thresholds up (a retrained model that
    calls more flowers versicolor); setosa is unaffected.
    """
    _, _, petal_length, petal_width = measurements
    if petal_length < 2.45:
        return "setosa"
    if petal_width < 1.75 + boundary_shift:
        return "versicolor" if petal_length < 4.95 + boundary_shift else "virginica"
    return "virginica"


def predict(
    instances: Sequence[Measurements], label_shift: int = 0, boundary_shift: float = 0.0
) -> list[str]:
    """Species for each instance; a non-zero `label_shift` rotates the labels (a broken model)."""
    predictions = []
    for measurements in instances:
        index = SPECIES.index(classify(measurements, boundary_shift))
        predictions.append(SPECIES[(index + label_shift) % len(SPECIES)])
    return predictions


def parse_instances(body: Any) -> list[Measurements]:
    """Validate `{"instances": [[4 numbers] | {feature: number}, ...]}` into measurements."""
    if not isinstance(body, dict) or "instances" not in body:
        raise BadInput('body must be a JSON object with an "instances" list')
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadInput('"instances" must be a non-empty list')
    if len(instances) > MAX_INSTANCES:
        raise BadInput(f'"instances" has {len(instances)} items; at most {MAX_INSTANCES} allowed')
    return [_parse_instance(i, instance) for i, instance in enumerate(instances)]


def _parse_instance(index: int, instance: Any) -> Measurements:
    where = f"instances[{index}]"
    if isinstance(instance, dict):
        missing = [name for name in FEATURES if name not in instance]
        if missing:
            raise BadInput(f"{where} is missing {', '.join(missing)}")
        values = [instance[name] for name in FEATURES]
        names = [f"{where}.{name}" for name in FEATURES]
    elif isinstance(instance, list):
        if len(instance) != len(FEATURES):
            raise BadInput(
                f"{where} has {len(instance)} values; expected {len(FEATURES)}: {', '.join(FEATURES)}"
            )
        values = instance
        names = [f"{where}[{i}]" for i in range(len(FEATURES))]
    else:
        raise BadInput(
            f"{where} must be a list of 4 numbers or an object with {', '.join(FEATURES)}"
        )
    for name, value in zip(names, values, strict=True):
        # bool is an int in Python but never a measurement.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadInput(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise BadInput(f"{name} must be a finite, non-negative length in cm, got {value!r}")
    a, b, c, d = (float(v) for v in values)
    return (a, b, c, d)
