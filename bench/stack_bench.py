"""Bring-up time and memory of the local stack, measured through the real CLI.

Each run: ``hekaton up --detach`` in a fresh state folder (wall clock, as a user waits for it),
the per-component start-up seconds recorded in stack.json, the resident memory of every process
in the stack's process groups (from /proc), when Prometheus first scraped the gateway (seconds
since ``up`` began), then ``hekaton down`` (wall clock). Prints medians.

    .venv/bin/python bench/stack_bench.py            # 3 warm runs (JVM class archives cached)
    .venv/bin/python bench/stack_bench.py --cold     # every run with an empty JVM cache
    .venv/bin/python bench/stack_bench.py --only pubsub,firestore
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
import urllib.request
from pathlib import Path
from typing import Any

from local.procs import group_rss_bytes


def hekaton() -> list[str]:
    """The installed console script, or the module when the project is not installed."""
    script = Path(sys.executable).with_name("hekaton")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


def one_run(only: str | None, cache_dir: Path | None, settle: float) -> dict[str, Any]:
    """Bring a stack up and down once; return its timings and memory."""
    with tempfile.TemporaryDirectory(prefix="hekaton-stack-bench-") as tmp:
        env = {**os.environ, "HEKATON_STATE_DIR": tmp}
        if cache_dir is not None:
            env["HEKATON_CACHE_DIR"] = str(cache_dir)
        up_args = ["up", "--detach", *(["--only", only] if only else [])]
        began = time.monotonic()
        up = subprocess.run([*hekaton(), *up_args], env=env, capture_output=True, text=True)
        up_wall = time.monotonic() - began
        if up.returncode != 0:
            raise SystemExit(f"hekaton up failed:\n{up.stdout}{up.stderr}")
        try:
            doc = json.loads((Path(tmp) / "stack.json").read_text())
            first_scrape = _first_scrape(doc, began)
            time.sleep(settle)  # let the JVMs finish start-up allocations before measuring
            rss = {
                name: group_rss_bytes(component["pgid"])
                for name, component in doc["components"].items()
            }
        finally:
            began = time.monotonic()
            down = subprocess.run([*hekaton(), "down"], env=env, capture_output=True, text=True)
            down_wall = time.monotonic() - began
        if down.returncode != 0:
            raise SystemExit(f"hekaton down failed:\n{down.stdout}{down.stderr}")
    return {
        "up_wall": up_wall,
        "first_scrape": first_scrape,
        "down_wall": down_wall,
        "seconds": doc["startup_seconds"],
        "rss": rss,
    }


def _first_scrape(doc: dict[str, Any], began: float, timeout: float = 30.0) -> float | None:
    """Seconds from ``began`` until Prometheus reports a healthy scrape of the gateway."""
    if "prometheus_url" not in doc or "gateway_url" not in doc:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{doc['prometheus_url']}/api/v1/targets", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
        if any(t["health"] == "up" for t in targets):
            return time.monotonic() - began
        time.sleep(0.02)
    return None


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", help="components to start, e.g. pubsub,firestore")
    parser.add_argument("--cold", action="store_true", help="empty JVM class-archive cache")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before measuring RSS")
    args = parser.parse_args()

    runs = []
    for _ in range(args.runs):
        if args.cold:
            with tempfile.TemporaryDirectory(prefix="hekaton-jvm-cache-") as cache:
                runs.append(one_run(args.only, Path(cache), args.settle))
        else:
            runs.append(one_run(args.only, None, args.settle))
    mode = "cold: no JVM class archive yet" if args.cold else "warm: JVM class archives cached"

    def median(values: list[float]) -> float:
        return statistics.median(values)

    print(f"local stack bring-up, median of {args.runs} runs ({mode})")
    walls = [r["up_wall"] for r in runs]
    print(f"  hekaton up --detach (wall) {median(walls):6.2f}s   runs: {_fmt(walls)}")
    totals = [r["seconds"]["total"] for r in runs]
    print(f"  all components healthy     {median(totals):6.2f}s   runs: {_fmt(totals)}")
    for name in runs[0]["rss"]:
        values = [r["seconds"][name] for r in runs]
        print(f"    {name:<24} {median(values):6.2f}s   runs: {_fmt(values)}")
    scrapes = [r["first_scrape"] for r in runs if r["first_scrape"] is not None]
    if scrapes:
        print(f"  prometheus scraped gateway {median(scrapes):6.2f}s   runs: {_fmt(scrapes)}")
    downs = [r["down_wall"] for r in runs]
    print(f"  hekaton down (wall)        {median(downs):6.2f}s   runs: {_fmt(downs)}")
    print(f"memory: RSS summed over each component's process group, {args.settle:g}s after up")
    total_mb = [sum(r["rss"].values()) / 2**20 for r in runs]
    for name in runs[0]["rss"]:
        mb = median([r["rss"][name] / 2**20 for r in runs])
        print(f"    {name:<24} {mb:6.0f} MB")
    print(f"  whole stack                {median(total_mb):6.0f} MB")
    return 0


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
