"""The OpenAPI documents: every route of each API is described, and every schema they name exists."""

from __future__ import annotations

import json
import re

import pytest

from shared.api.openapi import document


@pytest.mark.parametrize("api", ["read", "control"])
def test_every_reference_resolves(api: str) -> None:
    doc = document(api)
    assert doc["openapi"].startswith("3.1")
    names = set(doc["components"]["schemas"])
    refs = set(re.findall(r'"#/components/schemas/([A-Za-z]+)"', json.dumps(doc)))
    assert refs and refs <= names, refs - names
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            assert {"200", "401", "403", "404"} <= set(op["responses"]), (path, method)
            assert op["security"] == [{"bearer": []}]


def test_the_control_document_has_every_command() -> None:
    paths = document("control")["paths"]
    for command in ("abort", "promote", "pause", "resume", "approve"):
        assert f"/rollouts/{{id}}/{command}" in paths
        assert f"/services/{{name}}/{command}" in paths
    assert set(paths["/services/{name}"]) == {"get", "delete"}
    assert "post" in paths["/services/{name}/rollback"]
