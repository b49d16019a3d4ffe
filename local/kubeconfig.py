"""A kubeconfig that points kubectl and the kubernetes client at the local cluster's API server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

CONTEXT = "hekaton-local"


def kubeconfig_document(server: str, *, name: str = CONTEXT, namespace: str = "default") -> Any:
    """The kubeconfig for a plain-http API server without authentication."""
    if not server.startswith("http://"):
        raise ValueError(f"the local API server is plain http, got {server!r}")
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": name, "user": name, "namespace": namespace},
            }
        ],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str, *, name: str = CONTEXT) -> Path:
    """Write (atomically) a kubeconfig for ``server`` with current context ``name``."""
    text = yaml.safe_dump(kubeconfig_document(server, name=name), sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)
    return path
