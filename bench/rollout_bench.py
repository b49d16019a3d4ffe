"""Benchmark: push -> PROMOTED on the local stack, per-rollout usage, and each function's cold import time.

Usage: .venv/bin/python bench/rollout_bench.py [--rollouts 10] [--keep]
Brings up its own stack in a temporary state folder (your own stack, if any, is left alone), registers the
iris model with zero bake time and steps [10, 50, 100], pushes v1 once (first deploy), then alternates
v2/v1 pushes, each a full three-step rollout. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = """
name: irisbench
namespace: bench
image: us-docker.pkg.dev/demo/models/iris
tag_filter: "v[12]"
steps: [10, 50, 100]
bake_seconds: 0
readiness_deadline_seconds: 30
# The machinery's own cost: no users here, so metric analysis could only wait for evidence.
analysis: {enabled: false}
validation:
  requests:
    - name: setosa
      path: /predict
      json: {"instances": [[5.1, 3.5, 1.4, 0.2]]}
      expect: {status: 200, json: {"predictions": ["setosa"]}}
"""

# The client modules each function loads on its first event (Deps builds clients lazily).
_STORE, _KUBE, _PUB, _HTTP = "shared.firestore_store", "shared.knative", "shared.publisher", "httpx"
FUNCTION_CLIENTS = {
    "ingest": [_STORE, _PUB],
    "deploy": [_STORE, _KUBE, _PUB],
    "wait_ready": [_STORE, _KUBE, _PUB],
    "validate": [_STORE, _KUBE, _PUB, _HTTP],
    "shift": [_STORE, _KUBE, _PUB],
    "promote": [_STORE, _KUBE, _PUB],
    "tick": [_STORE, _PUB],
    "status": [_STORE, _KUBE],
}


def _median_import(modules: list[str], repeats: int) -> float:
    imports = "; ".join(f"import {m}" for m in modules)
    code = f"import time; t = time.perf_counter(); {imports}; print(time.perf_counter() - t)"
    samples = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        samples.append(float(out.stdout.strip()))
    return statistics.median(samples)


def cold_imports(repeats: int = 5) -> dict[str, tuple[float, float]]:
    """Median seconds, fresh interpreter: (entry module alone, entry module + the clients it uses)."""
    return {
        name: (
            _median_import([f"functions.{name}"], repeats),
            _median_import([f"functions.{name}", *clients], repeats),
        )
        for name, clients in FUNCTION_CLIENTS.items()
    }


def usage_by_rollout(log_dir: Path) -> dict[str, Counter[str]]:
    """Sum the per-invocation usage lines the functions log, per rollout id."""
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for path in log_dir.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            usage, rollout = record.get("usage"), record.get("rollout")
            if not usage or not rollout:
                continue
            for rid in rollout if isinstance(rollout, list) else [rollout]:
                totals[rid].update(usage)
    return totals


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollouts", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="leave the benchmark stack running")
    args = parser.parse_args()

    print(
        "cold import per function (median of 5, fresh interpreter): entry module | with its clients"
    )
    for module, (alone, with_clients) in cold_imports().items():
        print(f"  functions.{module:<12} {alone * 1000:6.0f} ms | {with_clients * 1000:6.0f} ms")

    state = Path(tempfile.mkdtemp(prefix="hekaton-bench-"))
    os.environ["HEKATON_STATE_DIR"] = str(state)
    from cli.demo import push_and_follow
    from cli.rollout_commands import register_file
    from cli.target import resolve
    from local import stack as local_stack

    started = time.monotonic()
    local_stack.ensure_up()
    print(f"\nbenchmark stack up in {time.monotonic() - started:.1f}s (state {state})")
    try:
        target = resolve()
        spec_file = state / "irisbench.yaml"
        spec_file.write_text(SPEC)
        register_file(target, spec_file)
        repo = "us-docker.pkg.dev/demo/models/iris"
        first = time.monotonic()
        ended = push_and_follow(target, "irisbench", f"{repo}:v1", quiet=True)
        print(
            f"first deploy (v1, no stable yet): {ended['phase']} in {time.monotonic() - first:.2f}s"
        )
        timings, ids = [], []
        for i in range(args.rollouts):
            tag = "v2" if i % 2 == 0 else "v1"
            t0 = time.monotonic()
            ended = push_and_follow(target, "irisbench", f"{repo}:{tag}", quiet=True)
            timings.append(time.monotonic() - t0)
            ids.append(ended["id"])
            if ended["phase"] != "PROMOTED":
                print(f"  rollout {ended['id']} ended {ended['phase']}: {ended.get('reason')}")
        print(f"\npush -> PROMOTED, 3 steps [10, 50, 100], zero bake ({args.rollouts} rollouts):")
        print(
            f"  median {statistics.median(timings):.2f}s  min {min(timings):.2f}s  max {max(timings):.2f}s"
        )
        print(f"  first (new revision started) {timings[0]:.2f}s; later ones reuse v1/v2 revisions")
        # Give the last functions a moment to flush their usage lines.
        time.sleep(0.5)
        usage = usage_by_rollout(state / "logs")
        per = [usage[r] for r in ids if r in usage]
        if per:
            print(
                "\nper rollout (median over rollouts; ingest + every step; the tick's sweeps are not included):"
            )
            for kind in ("firestore_reads", "firestore_writes", "kube_calls", "messages_published"):
                print(f"  {kind:<20} {statistics.median(u[kind] for u in per):6.0f}")
            print("  (+1 message: the registry push on topic gcr)")
    finally:
        if not args.keep:
            local_stack.stop_stack()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
