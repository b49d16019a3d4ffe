"""Fuzz every function entry point with generated inputs and print what became of them.

    .venv/bin/python bench/fuzz.py [--seed 1] [--count 10000] [--only ingest,status]

For each function in functions/manifest.py, `--count` seeded inputs go through functions-framework's
own Flask app (in process) onto in-memory fakes: CloudEvent functions get Pub/Sub push, Eventarc
binary and structured CloudEvent deliveries (tests/fuzz_inputs.py); the HTTP functions get requests
with odd paths, queries, headers, bodies and tokens (tests/fuzz_http.py). Each input ends handled,
recorded-and-acknowledged (an ignore record, bounded) or unhandled (an exception, a 5xx, or for a
push a status that makes Pub/Sub redeliver). Exits 1 if any input was unhandled.
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, seed, settings

from functions.manifest import FUNCTIONS
from tests import fuzz_http, fuzz_targets
from tests.fuzz_targets import HANDLED, RECORDED, UNHANDLED, Result

WORLD_INPUTS = 500


class Tally:
    """Counts of one entry point."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.max_recorded = 0
        self.examples: list[str] = []
        self.seconds = 0.0

    def total(self) -> int:
        """Inputs counted so far."""
        return sum(self.counts.values())

    def add(self, result: Result) -> None:
        """Count one result (and keep the first few unhandled ones to show)."""
        self.counts[result.outcome] += 1
        self.max_recorded = max(self.max_recorded, result.recorded_bytes)
        if result.outcome == UNHANDLED and len(self.examples) < 3:
            self.examples.append(f"status {result.status}: {result.detail}")


def run(name: str, count: int, seed_value: int, issuer_dir: Path) -> Tally:
    """Fuzz one entry point with `count` inputs."""
    tally = Tally()
    fn = next(f for f in FUNCTIONS if f.name == name)
    # A fresh world every WORLD_INPUTS inputs: the fakes keep every rollout the valid inputs start,
    # and a world of thousands makes each input slower than the input itself.
    if fn.http:
        world, ctx = fuzz_http.api_world(issuer_dir)
        tokens = fuzz_http.token_kinds(issuer_dir)
        strategy: Any = fuzz_http.api_requests(name, ctx, tokens)
        fresh = lambda: fuzz_http.api_world(issuer_dir)[0]  # noqa: E731
        send = lambda w, r: fuzz_http.call(w, name, r, tokens)  # noqa: E731
    else:
        world, ctx = fuzz_targets.fuzz_world()
        strategy = fuzz_targets.deliveries_for(fn, ctx)
        fresh = lambda: fuzz_targets.fuzz_world()[0]  # noqa: E731
        send = lambda w, r: fuzz_targets.deliver(w, name, r)  # noqa: E731
    current = [world]

    def one(request: Any) -> Result:
        if tally.total() and tally.total() % WORLD_INPUTS == 0:
            current[0] = fresh()
        return send(current[0], request)

    @seed(seed_value)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def body(request: Any) -> None:
        tally.add(one(request))

    started = time.perf_counter()
    body()
    tally.seconds = time.perf_counter() - started
    return tally


def main(argv: list[str] | None = None) -> int:
    """Fuzz, print the table, exit 1 on any unhandled input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=10_000, help="inputs per entry point")
    parser.add_argument("--only", default="", help="comma-separated function names")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count {args.count}: give at least 1 input per entry point")
    names = [f.name for f in FUNCTIONS]
    chosen = [n for n in args.only.split(",") if n] or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown function(s) {', '.join(unknown)}; known: {', '.join(names)}")
    logging.disable(logging.CRITICAL)  # millions of refusal warnings would drown the table
    import tempfile

    print(f"fuzz: seed {args.seed}, {args.count} inputs per entry point")
    header = f"{'entry point':<12}{'inputs':>8}{'handled':>9}{'recorded':>10}{'unhandled':>11}{'max rec B':>11}{'secs':>7}"
    print(header)
    print("-" * len(header))
    total_unhandled = 0
    with tempfile.TemporaryDirectory() as folder:
        for name in chosen:
            tally = run(name, args.count, args.seed, Path(folder))
            c = tally.counts
            inputs = sum(c.values())
            total_unhandled += c[UNHANDLED]
            print(
                f"{name:<12}{inputs:>8}{c[HANDLED]:>9}{c[RECORDED]:>10}{c[UNHANDLED]:>11}"
                f"{tally.max_recorded:>11}{tally.seconds:>7.1f}",
                flush=True,
            )
            for example in tally.examples:
                print(f"    unhandled: {example}")
    if total_unhandled:
        print(f"FAIL: {total_unhandled} unhandled input(s)")
        return 1
    print("ok: every input handled or recorded-and-acknowledged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
