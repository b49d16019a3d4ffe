"""`hekaton demo`: the main job on the local stack — iris v1..v4 pushed, followed, explained."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from cli.rollout_commands import (
    CommandError,
    fetch,
    publish_push,
    register_file,
    registry_message,
    render_decision,
    render_status,
    wait_for_rollout,
)
from cli.target import REPO_ROOT, Target, TargetError, resolve
from shared.steps.ingest import rollout_id

SERVICE_SPEC = REPO_ROOT / "examples" / "iris" / "service.yaml"
REPOSITORY = "us-docker.pkg.dev/demo/models/iris"


@dataclass(frozen=True)
class Scene:
    """One push in the demo and what it shows."""

    tag: str
    story: str
    expected: str


SCENES = (
    Scene("v1", "first deploy: validated, then 100 %", "PROMOTED"),
    Scene("v2", "a new version: validated, then 10 -> 50 -> 100 %", "PROMOTED"),
    Scene("v3", "answers, but predicts wrong: validation must stop it", "FAILED"),
    Scene("v4", "crashes on start: Knative reports the exit code", "FAILED"),
)


def push_and_follow(
    target: Target, service: str, image: str, *, timeout: float = 180.0, quiet: bool = False
) -> dict[str, Any]:
    """Push one image, then follow the rollout it starts to its end (printing each decision)."""
    body = registry_message(image)
    message_id = publish_push(target, body)
    digest = body["digest"].split("@", 1)[1]
    expected_id = rollout_id(service, digest, message_id)

    def show(_rollout: dict[str, Any], decision: dict[str, Any]) -> None:
        if not quiet:
            print(render_decision(decision), flush=True)

    return wait_for_rollout(
        target, service, rollout_id=expected_id, timeout=timeout, on_decision=show
    )


def run_demo(target: Target) -> int:
    """Register iris and push v1..v4; return 0 when every rollout ended as expected."""
    name, _ = register_file(target, SERVICE_SPEC)
    print(f"registered service {name} from {SERVICE_SPEC.relative_to(REPO_ROOT)}\n")
    surprises = []
    for scene in SCENES:
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
    return 1 if surprises else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from local import stack as local_stack

    try:
        local_stack.ensure_up()
        target = resolve()
        code = run_demo(target)
    except (CommandError, TargetError, RuntimeError) as exc:
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
    p = subparsers.add_parser("demo", help="bring the stack up and roll iris v1..v4 through it")
    p.add_argument("--down", action="store_true", help="take the stack down at the end")
    p.set_defaults(func=_cmd_demo)
