"""The fault injectors as parts of the local stack: where they sit and what they are told.

With a fault spec, the plan gains a setup step that writes the spec to ``<state>/faults.json``
(published in stack.json as ``faults_spec``, with the counts folder ``faults_counts`` and the
kinds ``faults_kinds``), a Firestore outage proxy after the emulators (the functions reach
Firestore through it), and a delivery proxy after the functions (push subscriptions point at
it). The cluster injects its own faults, and functions run under the crash supervisor.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from local.components import Component, Launch, Ready, StackContext, http_server_component
from local.faults.spec import COUNTS_DIR, FaultSpec, write_spec
from local.procs import ManagedProcess, group_listens_on

SPEC_EXPORT = "faults_spec"
COUNTS_EXPORT = "faults_counts"
KINDS_EXPORT = "faults_kinds"
SEED_EXPORT = "faults_seed"
CRASH_EXPORT = "faults_crash_points"
DELIVERY_EXPORT = "delivery_proxy_url"
FIRESTORE_EXPORT = "firestore_functions_host"  # where the functions reach Firestore


def kinds_on(ctx: StackContext) -> set[str]:
    """The fault kinds this stack injects (none without a spec)."""
    return {k for k in ctx.exports.get(KINDS_EXPORT, "").split(",") if k}


def counts_file(ctx: StackContext, injector: str) -> Path:
    """Where `injector` writes its counts."""
    return Path(ctx.exports[COUNTS_EXPORT]) / f"{injector}.json"


def spec_setup(spec: FaultSpec) -> Callable[[StackContext], Mapping[str, str]]:
    """Setup step: write the spec where the injectors read it; publish where it and the counts are."""

    def run(ctx: StackContext) -> Mapping[str, str]:
        counts = ctx.state_dir / COUNTS_DIR
        counts.mkdir(parents=True, exist_ok=True)
        for stale in counts.glob("*.json"):
            stale.unlink()  # a previous run's counts must not add up with this one's
        path = write_spec(ctx.state_dir, spec)
        return {
            SPEC_EXPORT: str(path),
            COUNTS_EXPORT: str(counts),
            KINDS_EXPORT: ",".join(spec.kinds()),
            SEED_EXPORT: str(spec.seed),
            CRASH_EXPORT: spec.crash.env_value() if spec.crash else "",
        }

    return run


def cluster_fault_args(ctx: StackContext) -> tuple[str, ...]:
    """`local.kube serve` arguments that make the cluster inject the spec's Kubernetes faults."""
    if "kube" not in kinds_on(ctx):
        return ()
    return (f"--faults={ctx.exports[SPEC_EXPORT]}", f"--fault-counts={counts_file(ctx, 'kube')}")


def crash_env(ctx: StackContext, *, event_function: bool) -> dict[str, str]:
    """The crash points an event function arms (HTTP APIs never crash: a person is on the line)."""
    points = ctx.exports.get(CRASH_EXPORT, "")
    if "crash" not in kinds_on(ctx) or not event_function or not points:
        return {}
    return {"HEKATON_CRASH_POINTS": points, "HEKATON_CRASH_SEED": ctx.exports[SEED_EXPORT]}


def supervised(argv: Sequence[str], ctx: StackContext, name: str) -> list[str]:
    """`argv` run under the crash supervisor when crash points are on (unchanged otherwise)."""
    if "crash" not in kinds_on(ctx):
        return list(argv)
    counts = counts_file(ctx, f"crash-{name}")
    return [sys.executable, "-m", "local.faults.supervisor", f"--counts={counts}", "--", *argv]


def delivery_proxy_component(functions: Sequence[str]) -> Component:
    """The delivery proxy in front of these functions (their URLs are in the context by then)."""

    def command(port: int, ctx: StackContext) -> list[str]:
        routes = [
            f"--route={name}={ctx.urls[f'fn-{name}']}"
            for name in functions
            if f"fn-{name}" in ctx.urls
        ]
        return [
            sys.executable, "-m", "local.faults.delivery",
            f"--spec={ctx.exports[SPEC_EXPORT]}",
            f"--counts={counts_file(ctx, 'delivery')}",
            f"--port={port}",
            *routes,
        ]  # fmt: skip

    return http_server_component(
        "delivery-proxy",
        command,
        env=lambda ctx: {"PYTHONPATH": str(ctx.repo_root), "PYTHONUNBUFFERED": "1"},
        cwd=None,
        health_path="/healthz",
        accept=lambda status, _body: status == 200,
        exports=lambda url: {DELIVERY_EXPORT: url},
        timeout=20.0,
    )


def firestore_outage_component() -> Component:
    """The TCP proxy with outage windows in front of the Firestore emulator."""

    def command(port: int, ctx: StackContext) -> list[str]:
        return [
            sys.executable, "-m", "local.faults.tcp_outage",
            f"--spec={ctx.exports[SPEC_EXPORT]}",
            f"--counts={counts_file(ctx, 'firestore')}",
            f"--port={port}",
            f"--upstream={ctx.exports['firestore_emulator_host']}",
        ]  # fmt: skip

    base = http_server_component(
        "firestore-proxy",
        command,
        env=lambda ctx: {"PYTHONPATH": str(ctx.repo_root), "PYTHONUNBUFFERED": "1"},
        timeout=20.0,
    )

    def probe(launch: Launch, process: ManagedProcess) -> Ready | None:
        # A byte pipe has no health URL: listening is ready.
        port = launch.port
        if port is None or not group_listens_on(process.pgid, port):
            return None
        host = f"127.0.0.1:{port}"
        return Ready(url=f"tcp://{host}", exports={FIRESTORE_EXPORT: host})

    return Component(
        name=base.name,
        launch=base.launch,
        probe=probe,
        timeout=base.timeout,
        attempts=base.attempts,
    )
