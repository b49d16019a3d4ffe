"""Soak: N rollouts over M services with faults injected, compared with a fault-free run of the same seed.

Usage: .venv/bin/python bench/soak.py [--rollouts 20] [--services 4] [--faults all|FILE] [--seed 1]
                                      [--baseline FILE | --save FILE] [--timeout 240]

Brings up its own stacks in temporary state folders (your own stack, if any, is left alone): first
the fault-free one (unless --baseline gives a saved fault-free result), then the faulty one, each
driven through the same seeded scenario (local/soak/scenario.py: good and bad candidates, operator
commands at fixed steps). Prints rollouts, faults injected by kind, lost rollouts, duplicated or
missing decisions, wrong final phases and traffic, and time to converge. Exit status 1 on any lost,
duplicated, missing or wrong; 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.components import MissingComponent  # noqa: E402
from local.faults.counts import totals_by_kind  # noqa: E402
from local.faults.spec import FaultSpec, FaultSpecError, load_spec  # noqa: E402
from local.soak.compare import Comparison, compare, run_document  # noqa: E402
from local.soak.driver import drive, stack_target  # noqa: E402
from local.soak.scenario import make_scenario  # noqa: E402
from local.stack import StackOptions, StackStartFailed, up  # noqa: E402


def run_once(
    args: argparse.Namespace, faults: FaultSpec | None, label: str, workdir: Path
) -> dict[str, Any]:
    """One stack, the whole scenario, the stack stopped; the run's document."""
    state_dir = workdir / label
    state_dir.mkdir()
    os.environ["HEKATON_STATE_DIR"] = str(state_dir)
    began = time.monotonic()
    started = up(StackOptions(state_dir=state_dir, faults=faults), progress=None)
    print(f"[{label}] stack up in {time.monotonic() - began:.1f}s", flush=True)
    try:
        scenario = make_scenario(args.seed, args.rollouts, args.services)
        began = time.monotonic()
        services = drive(
            stack_target(started.state),
            scenario,
            workdir / f"{label}-specs",
            timeout=args.timeout,
            parallel=args.parallel or args.services,
        )
        print(f"[{label}] scenario ran in {time.monotonic() - began:.1f}s", flush=True)
        counts = totals_by_kind(state_dir / "faults") if faults else {}
    finally:
        started.stop()
    return run_document(services, seed=args.seed, faults=counts)


def _fault_table(counts: dict[str, int]) -> list[str]:
    # Not faults: how many pushes went through the proxy.
    shown = {k: v for k, v in counts.items() if not k.endswith(".pushes") and v}
    return [f"  {kind:<34} {n:>6}" for kind, n in shown.items()]


def report(result: Comparison, faulty: dict[str, Any], baseline: dict[str, Any], args: Any) -> str:
    """The soak's table."""
    median, longest = result.converge()
    base_median, base_longest = compare(baseline, baseline).converge()
    base_lost = [r for r in baseline["rollouts"] if r.get("lost") or r.get("phase") is None]
    phases: dict[str, int] = {}
    for r in faulty["rollouts"]:
        phases[r.get("phase") or "LOST"] = phases.get(r.get("phase") or "LOST", 0) + 1
    pushes = faulty["faults"].get("delivery.pushes", 0)
    lines = [
        f"soak: seed {args.seed}, {args.rollouts} rollouts over {args.services} services, "
        f"faults {args.faults}",
        f"  {'rollouts':<34} {result.rollouts:>6}   ({', '.join(f'{k} {v}' for k, v in sorted(phases.items()))})",
        f"  {'pushes through the delivery proxy':<34} {pushes:>6}",
        "faults injected by kind:",
        *_fault_table(faulty["faults"]),
        "compared with the fault-free run:",
        f"  {'lost rollouts':<34} {len(result.lost):>6}",
        f"  {'duplicated decisions':<34} {len(result.duplicated):>6}",
        f"  {'missing decisions':<34} {len(result.missing):>6}",
        f"  {'wrong final phase':<34} {len(result.wrong_phase):>6}",
        f"  {'wrong final traffic':<34} {len(result.wrong_traffic):>6}",
        f"  {'wrong 0 % routes (same split)':<34} {len(result.route_drift):>6}",
        f"  {'baseline rollouts lost':<34} {len(base_lost):>6}",
        f"  {'time to converge, median / max':<34} {median:>5.1f}s / {longest:.1f}s",
        f"  {'  fault-free run, median / max':<34} {base_median:>5.1f}s / {base_longest:.1f}s",
    ]
    for title, items in (
        ("lost", result.lost),
        ("duplicated", result.duplicated),
        ("missing", result.missing),
        ("wrong phase", result.wrong_phase),
        ("wrong traffic", result.wrong_traffic),
        ("wrong 0 % route", result.route_drift),
    ):
        lines += [f"  {title}: {item}" for item in items[:10]]
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Run the soak; exit 1 on any lost/duplicated/missing/wrong (a 0 % route included)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--services", type=int, default=4)
    parser.add_argument("--faults", default="all", help="`all` or a fault spec file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per rollout")
    parser.add_argument("--parallel", type=int, default=0, help="services driven at once (all)")
    parser.add_argument(
        "--baseline", type=Path, help="a saved fault-free run (--save) to compare with"
    )
    parser.add_argument("--save", type=Path, help="save the fault-free run here, for --baseline")
    parser.add_argument("--json", type=Path, help="write the faulty run and the comparison here")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep both stacks' state folders (function logs, fault counts) in this new folder",
    )
    args = parser.parse_args()
    # A soak stopped by SIGTERM (a CI timeout) still stops the stack it started (run_once's finally).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        make_scenario(args.seed, args.rollouts, args.services)
        faults = load_spec(args.faults, seed=args.seed)
    except (ValueError, FaultSpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.keep is not None and args.keep.exists():
        print(f"error: --keep {args.keep} exists; name a new folder", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as scope:
        if args.keep is not None:
            args.keep.mkdir(parents=True)
            workdir = args.keep
        else:
            workdir = Path(scope.enter_context(tempfile.TemporaryDirectory(prefix="hekaton-soak-")))
        try:
            if args.baseline:
                baseline = json.loads(args.baseline.read_text())
                if baseline.get("seed") != args.seed:
                    print(f"error: {args.baseline} is a run of seed {baseline.get('seed')}, "
                          f"not {args.seed}", file=sys.stderr)  # fmt: skip
                    return 2
            else:
                baseline = run_once(args, None, "fault-free", workdir)
                if args.save:
                    args.save.write_text(json.dumps(baseline, indent=1))
            faulty = run_once(args, faults, "faulty", workdir)
        except MissingComponent as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except StackStartFailed as exc:
            print(f"error: {exc}\n{exc.log_tail()}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("soak interrupted; its stacks were stopped", file=sys.stderr)
            return 130
    result = compare(faulty, baseline)
    print(report(result, faulty, baseline, args))
    if args.json:
        args.json.write_text(json.dumps({"faulty": faulty, "comparison": vars(result)}, indent=1))
    base_lost = any(r.get("lost") for r in baseline["rollouts"])
    return 1 if not result.ok or base_lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
