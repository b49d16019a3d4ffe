"""`hekaton demo`: the main job on the local stack — iris v1..v6 pushed under user load, followed, explained.

After v1 is serving, a load generator sends user-like requests through the gateway for the rest of
the demo, so every canary step is judged on real traffic measured by the real Prometheus.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from cli.api_client import control
from cli.rollout_commands import (
    CommandError,
    fetch,
    publish_push,
    register_file,
    registry_message,
    render_decision,
    render_progress,
    render_status,
    wait_for_rollout,
)
from cli.target import REPO_ROOT, Target, TargetError, resolve
from local.load import LoadError, LoadReport, LoadRun, config_for_service
from shared.spec import load_spec
from shared.steps.ingest import rollout_id

PROGRESS_EVERY_SECONDS = 2.0

SERVICE_SPEC = REPO_ROOT / "examples" / "iris" / "service.yaml"
REPOSITORY = "us-docker.pkg.dev/demo/models/iris"


# Users of the example model while the canaries run: enough that a step is judged in seconds.
DEMO_RPS = 40.0
DEMO_LOAD_SECONDS = 900.0


@dataclass(frozen=True)
class Scene:
    """One push in the demo and what it shows."""

    tag: str
    story: str
    expected: str


SCENES = (
    Scene("v1", "first deploy: validated, then 100 %", "PROMOTED"),
    Scene(
        "v2",
        "a new version under user load: judged against v1 at 10 -> 50 -> 100 %",
        "PROMOTED",
    ),
    Scene("v3", "answers, but predicts wrong: the smoke requests stop it", "FAILED"),
    Scene("v4", "crashes on start: Knative reports the exit code", "FAILED"),
    Scene(
        "v5",
        "passes the smoke requests, then fails every 4th request and is slow: "
        "the judge rolls it back at its first step",
        "ROLLED_BACK",
    ),
    Scene(
        "v6",
        "passes the smoke requests, but disagrees with v2 on the golden set",
        "FAILED",
    ),
)


def push_and_follow(
    target: Target, service: str, image: str, *, timeout: float = 180.0, quiet: bool = False
) -> dict[str, Any]:
    """Push one image, then follow the rollout it starts to its end (printing each decision)."""
    body = registry_message(image)
    message_id = publish_push(target, body)
    digest = body["digest"].split("@", 1)[1]
    expected_id = rollout_id(service, digest, message_id)

    shown: dict[str, float] = {}

    def show(_rollout: dict[str, Any], decision: dict[str, Any]) -> None:
        if not quiet:
            print(render_decision(decision), flush=True)

    def progress(_rollout: dict[str, Any], figures: dict[str, Any]) -> None:
        # One live line every few seconds is enough to see the evidence grow.
        now = time.monotonic()
        if not quiet and now - shown.get("at", 0.0) >= PROGRESS_EVERY_SECONDS:
            shown["at"] = now
            print(render_progress(figures), flush=True)

    return wait_for_rollout(
        target,
        service,
        rollout_id=expected_id,
        timeout=timeout,
        on_decision=show,
        on_progress=progress,
    )


def run_demo(target: Target) -> int:
    """Register iris and push v1..v6 (under user load from v2 on); 0 when each ended as expected."""
    spec = load_spec(SERVICE_SPEC)
    start_fresh(target, spec.name)
    name, _ = register_file(target, SERVICE_SPEC)
    namespace = spec.namespace
    print(f"registered service {name} from {SERVICE_SPEC.relative_to(REPO_ROOT)}\n")
    surprises = []
    load: LoadRun | None = None
    try:
        for scene in SCENES:
            if load is None and scene.tag != SCENES[0].tag:
                load = LoadRun(
                    config_for_service(
                        name, namespace, rps=DEMO_RPS, duration=DEMO_LOAD_SECONDS, seed=1
                    )
                ).start()
                print(
                    f"== user load: {DEMO_RPS:g} requests/s to {name}.{namespace} through the "
                    "gateway (Poisson arrivals), until the end of the demo\n",
                    flush=True,
                )
            print(f"== push {REPOSITORY}:{scene.tag} — {scene.story}", flush=True)
            started = time.monotonic()
            ended = push_and_follow(target, name, f"{REPOSITORY}:{scene.tag}")
            took = time.monotonic() - started
            verdict = (
                "as expected" if ended["phase"] == scene.expected else f"EXPECTED {scene.expected}"
            )
            print(f"-> {ended['phase']} in {took:.1f}s ({verdict})\n")
            if ended["phase"] != scene.expected:
                surprises.append(scene.tag)
            print(render_status(fetch(target, f"/services/{name}")) + "\n", flush=True)
    finally:
        if load is not None:
            print(render_load(load.stop()) + "\n", flush=True)
    return 1 if surprises else 0


def start_fresh(target: Target, name: str) -> None:
    """Delete what an earlier demo left of the service, so this run starts from a first deploy.

    Its Knative Service and revisions go (so every image starts as a new process, as on a fresh
    stack); its rollouts and decisions stay readable with `hekaton history`.
    """
    try:
        status = fetch(target, f"/services/{name}")
    except CommandError:
        return  # not registered: nothing to clear
    if status.get("deleted_at"):
        return
    print(
        f"{name} exists on this stack from an earlier run: deleting it so the demo starts from a "
        f"first deploy (its history stays readable: `hekaton history {name}`)",
        flush=True,
    )
    control(target, "DELETE", f"/services/{name}", {"reason": "hekaton demo starts over"})


def render_load(report: LoadReport) -> str:
    """What the users saw: requests sent, answers by status and by model version."""
    statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(report.by_status.items()))
    versions = ", ".join(f"{v}: {n:,}" for v, n in sorted(report.version_counts().items()))
    unanswered = sum(report.errors.values())
    return (
        f"user load: {report.sent:,} requests in {report.elapsed:.0f}s "
        f"({report.achieved_rps:.1f}/s); answers {statuses or 'none'}"
        + (f"; {unanswered:,} unanswered" if unanswered else "")
        + f"\n  answered by model version: {versions or 'none'}"
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from local import stack as local_stack

    try:
        local_stack.ensure_up()
        target = resolve()
        code = run_demo(target)
    except (CommandError, TargetError, LoadError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    if args.down:
        local_stack.stop_stack()
    else:
        print(
            "The stack is still up. Try:\n"
            "  .venv/bin/hekaton status iris            # live traffic and rollouts\n"
            "  .venv/bin/hekaton history iris           # every decision and why\n"
            f"  .venv/bin/hekaton push {REPOSITORY}:v1  # roll v1 out again, then `hekaton watch iris`\n"
            "  .venv/bin/hekaton rollback iris          # force traffic back to the previous stable revision\n"
            '  eval "$(.venv/bin/hekaton env)" && kubectl get ksvc,revisions -n models\n'
            "  .venv/bin/hekaton down                   # stop everything"
        )
    return code


def register(subparsers: Any) -> None:
    """Add `hekaton demo`."""
    p = subparsers.add_parser(
        "demo", help="bring the stack up and roll iris v1..v6 through it under user load"
    )
    p.add_argument("--down", action="store_true", help="take the stack down at the end")
    p.set_defaults(func=_cmd_demo)
