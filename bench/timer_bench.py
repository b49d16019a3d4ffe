"""Benchmark: how late each wait resolves when only timers (Cloud Tasks) can wake it on time.

Usage: .venv/bin/python bench/timer_bench.py [--services 5] [--pushes 4] [--bake 10] [--tick-only] [--keep]
Brings up its own stack in a temporary state folder with the safety-net tick at 60 s (Cloud
Scheduler's pace in GCP) and the Cloud Tasks emulator; registers `--services` services following
the same repository (steps [10, 50, 100], `--bake` seconds each, analysis off), deploys v1 to all,
then pushes v2, v1, ... `--pushes` times: each push starts one three-step rollout per service, so
services x pushes rollouts, concurrently per push. For every bake it prints the lateness
(the time the step woken at the end of the bake acted, minus the due time the bake set), and for
every task the emulator dispatched, dispatch time minus schedule time. `--tick-only` leaves the
Cloud Tasks emulator out (the functions then run with HEKATON_TIMERS=tick): the lateness without
timers, for comparison. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPOSITORY = "us-docker.pkg.dev/demo/models/iris"
TICK_SECONDS = 60.0
TARGET_SECONDS = 1.0

SPEC = """
name: {name}
namespace: timerbench
image: {repository}
tag_filter: "v[12]"
steps: [10, 50, 100]
bake_seconds: {bake}
readiness_deadline_seconds: 60
# No users here: metric analysis could only wait for evidence. Bake time alone ends each step.
analysis: {{enabled: false}}
validation:
  requests:
    - name: setosa
      path: /predict
      json: {{"instances": [[5.1, 3.5, 1.4, 0.2]]}}
      expect: {{status: 200, json: {{"predictions": ["setosa"]}}}}
"""


def bake_lateness(rollout: dict[str, Any], bake: float) -> list[float]:
    """Seconds between each bake's due time and the step that acted once it was over."""
    decisions = {d["seq"]: d for d in rollout["decisions"]}
    late = []
    for decision in rollout["decisions"]:
        if decision["outcome"] != "step_applied" or decision["seq"] + 1 not in decisions:
            continue
        due = datetime.fromisoformat(decision["at"]) + timedelta(seconds=bake)
        woken = datetime.fromisoformat(decisions[decision["seq"] + 1]["at"])
        late.append((woken - due).total_seconds())
    return late


def dispatch_lateness(log: Path) -> list[float]:
    """Seconds between each task's schedule time and its first dispatch (the emulator's log)."""
    late = []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record["attempt"] == 1:
            dispatched = datetime.fromisoformat(record["dispatch_time"])
            late.append((dispatched - datetime.fromisoformat(record["due_time"])).total_seconds())
    return late


def summary(values: list[float]) -> str:
    """min / median / p95 / max in ms, and how many are over the 1 s target."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    over = sum(1 for v in ordered if v > TARGET_SECONDS)
    ms = [v * 1000 for v in (ordered[0], statistics.median(ordered), p95, ordered[-1])]
    return (
        f"n={len(ordered)}  min {ms[0]:.0f} ms  median {ms[1]:.0f} ms  p95 {ms[2]:.0f} ms  "
        f"max {ms[3]:.0f} ms  over {TARGET_SECONDS:g} s: {over}"
    )


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=5)
    parser.add_argument("--pushes", type=int, default=4)
    parser.add_argument("--bake", type=float, default=10.0)
    parser.add_argument(
        "--tick-only",
        action="store_true",
        help="no Cloud Tasks emulator: only the tick wakes waits",
    )
    parser.add_argument("--keep", action="store_true", help="leave the benchmark stack running")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="hekaton-timer-bench-"))
    os.environ["HEKATON_STATE_DIR"] = str(state)
    from cli.rollout_commands import (
        publish_push,
        register_file,
        registry_message,
        wait_for_rollout,
    )
    from cli.target import resolve
    from local import stack as local_stack
    from local.tasks_component import NAME as TASKS
    from shared.steps.ingest import rollout_id

    started = time.monotonic()
    options = local_stack.StackOptions(state_dir=state, tick_seconds=TICK_SECONDS)
    if args.tick_only:
        plan = local_stack.default_plan(options)
        every = {
            c.name
            for step in plan
            if isinstance(step, local_stack.ComponentGroup)
            for c in step.components
        }
        options = replace(options, only=frozenset(every - {TASKS}))
    running = local_stack.up(options).state
    print(
        f"benchmark stack up in {time.monotonic() - started:.1f}s (state {state}); "
        f"tick every {TICK_SECONDS:g} s, timers: {'none (tick only)' if args.tick_only else 'Cloud Tasks emulator'}"
    )
    try:
        target = resolve()
        services = [f"timers{i}" for i in range(args.services)]
        for name in services:
            spec_file = state / f"{name}.yaml"
            spec_file.write_text(SPEC.format(name=name, repository=REPOSITORY, bake=args.bake))
            register_file(target, spec_file)

        def push_all(tag: str) -> list[dict[str, Any]]:
            body = registry_message(f"{REPOSITORY}:{tag}")
            message_id = publish_push(target, body)
            digest = body["digest"].split("@", 1)[1]
            return [
                wait_for_rollout(
                    target, s, rollout_id=rollout_id(s, digest, message_id), timeout=600
                )
                for s in services
            ]

        first = time.monotonic()
        ended = push_all("v1")
        print(
            f"first deploy of {len(services)} services: "
            f"{sorted({r['phase'] for r in ended})} in {time.monotonic() - first:.1f}s"
        )
        rollouts: list[dict[str, Any]] = []
        durations: list[float] = []
        for i in range(args.pushes):
            t0 = time.monotonic()
            ended = push_all("v2" if i % 2 == 0 else "v1")
            durations.append(time.monotonic() - t0)
            rollouts += ended
            for rollout in ended:
                if rollout["phase"] != "PROMOTED":
                    print(
                        f"  rollout {rollout['id']} ended {rollout['phase']}: {rollout['reason']}"
                    )
        bakes = [late for r in rollouts for late in bake_lateness(r, args.bake)]
        log = running.exports.get("tasks_dispatch_log")
        tasks = dispatch_lateness(Path(log)) if log else []

        print(
            f"\n{len(rollouts)} rollouts ({len(services)} services x {args.pushes} pushes), "
            f"3 steps, {args.bake:g} s bakes, tick every {TICK_SECONDS:g} s"
        )
        print(f"  each push -> all PROMOTED: {', '.join(f'{d:.1f}s' for d in durations)}")
        print(f"  bake lateness (woken step acted - due):   {summary(bakes)}")
        if tasks:
            print(f"  task dispatch lateness (every wait):     {summary(tasks)}")
    finally:
        if not args.keep:
            local_stack.stop_stack()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
