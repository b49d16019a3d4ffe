"""Service specs for the e2e tests: the iris example's smoke checks, per-test names and repositories."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
IRIS_SPEC_FILE = REPO_ROOT / "examples" / "iris" / "service.yaml"
# The example model's repository (examples/catalog.yaml: v1, v2 correct, v3 wrong, v4 crashes).
IRIS_REPOSITORY = "us-docker.pkg.dev/demo/models/iris"
# A namespace of their own for the e2e services that are not the example one.
E2E_NAMESPACE = "e2e"


def e2e_repository(test: str) -> str:
    """The repository only one test pushes to (examples/catalog.yaml: correct models v1..v3)."""
    return f"us-docker.pkg.dev/demo/e2e-{test}/iris"


def iris_spec(**overrides: Any) -> dict[str, Any]:
    """examples/iris/service.yaml as a dict, with some fields replaced.

    Its golden file is made absolute: the tests register the spec from a file in another folder.
    """
    spec = copy.deepcopy(yaml.safe_load(IRIS_SPEC_FILE.read_text()))
    golden = spec.get("validation", {}).get("golden")
    if golden and golden.get("file"):
        golden["file"] = str(IRIS_SPEC_FILE.parent / golden["file"])
    spec.update(overrides)
    return dict(spec)


def e2e_spec(name: str, repository: str, **overrides: Any) -> dict[str, Any]:
    """The iris spec renamed to `name`, following `repository`, in the e2e namespace, no bake.

    Analysis is off by default: these services get no load, so metrics could only say "not enough
    evidence"; the tests of metric analysis turn it on.
    """
    fields: dict[str, Any] = {
        "namespace": E2E_NAMESPACE,
        "bake_seconds": 0,
        "analysis": {"enabled": False},
        **overrides,
    }
    return iris_spec(name=name, image=repository, **fields)
