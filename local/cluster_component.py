"""The local cluster (``python -m local.kube serve``) as a stack component."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from local.components import Component, Launch, MissingComponent, Ready, StackContext, http_get
from local.faults.components import cluster_fault_args
from local.procs import ManagedProcess, read_stat

READY_FILE = "cluster-ready.json"


def default_cluster_command() -> tuple[str, ...]:
    """How to run the local cluster: ``$HEKATON_CLUSTER_COMMAND`` or ``python -m local.kube``."""
    override = os.environ.get("HEKATON_CLUSTER_COMMAND")
    if override:
        return tuple(shlex.split(override))
    return (sys.executable, "-m", "local.kube")


def cluster_component(command: Sequence[str], *, timeout: float = 60.0) -> Component:
    """The local Kubernetes/Knative cluster (``local.kube serve``) with its ingress gateway.

    Contract: it writes ``--ready-file`` as JSON ``{"kube_server", "gateway_url", "pid"}`` once
    listening and runs until SIGTERM. Healthy = our process alive, ready file written by a
    process of our group, ``GET <kube_server>/version`` and ``GET <gateway_url>/healthz`` 200.
    """

    def check() -> None:
        is_default = tuple(command[1:]) == ("-m", "local.kube")
        if is_default and importlib.util.find_spec("local.kube.__main__") is None:
            raise MissingComponent(
                "the local cluster (local.kube)",
                "local/kube/__main__.py is not in this checkout",
                "Update your checkout, or start only the emulators with `--only pubsub,firestore`.",
            )

    def launch(ctx: StackContext) -> Launch:
        ready_file = ctx.state_dir / READY_FILE
        ready_file.unlink(missing_ok=True)
        argv = (
            *command,
            "serve",
            "--host=127.0.0.1",
            "--port=0",
            "--gateway-port=0",
            f"--domain={ctx.domain}",
            f"--catalog={ctx.repo_root / 'examples' / 'catalog.yaml'}",
            f"--revision-logs={ctx.state_dir / 'logs' / 'revisions'}",
            f"--ready-file={ready_file}",
            *cluster_fault_args(ctx),
        )
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return Launch(argv=argv, env=env, cwd=ctx.repo_root, facts={"ready_file": str(ready_file)})

    def probe(launch: Launch, process: ManagedProcess) -> Ready | None:
        try:
            ready = json.loads(Path(launch.facts["ready_file"]).read_text())
            kube_server, gateway_url = str(ready["kube_server"]), str(ready["gateway_url"])
            writer = read_stat(int(ready["pid"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None  # not written yet, or caught half-written
        if writer is None or writer.pgid != process.pgid:
            return None  # a ready file from someone else's cluster
        version, healthz = http_get(f"{kube_server}/version"), http_get(f"{gateway_url}/healthz")
        if version is None or version[0] != 200 or healthz is None or healthz[0] != 200:
            return None
        return Ready(
            url=kube_server, exports={"kube_server": kube_server, "gateway_url": gateway_url}
        )

    return Component(
        name="cluster", launch=launch, probe=probe, check=check, timeout=timeout, stop_timeout=10.0
    )
