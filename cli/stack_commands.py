"""``hekaton up | down | env | ps``: the local stack from a terminal."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from local import stack, stack_state
from local.components import MissingComponent
from local.functions_stack import TICK_SECONDS
from local.procs import group_rss_bytes, tail

ENV_ORDER = (
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
    "HEKATON_KUBE_SERVER",
    "HEKATON_GATEWAY_URL",
    "HEKATON_PROMETHEUS_URL",
    "KUBECONFIG",
)


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _say(message: str) -> None:
    print(message, flush=True)


def timing_line(state: stack_state.StackState) -> str:
    """'stack up in 3.2s: pubsub 2.1s, firestore 2.8s, cluster 0.6s'."""
    seconds = state.startup_seconds
    parts = [f"{name} {seconds[name]:.1f}s" for name in state.components if name in seconds]
    parts += [f"{k} {v:.1f}s" for k, v in seconds.items() if k.startswith("setup:")]
    return f"stack up in {seconds.get('total', 0.0):.1f}s: {', '.join(parts)}"


def describe(state: stack_state.StackState) -> str:
    """Where everything is, as a short aligned block."""
    exports = state.exports
    rows = [("project", state.project)]
    labels = {
        "pubsub_emulator_host": "pubsub",
        "firestore_emulator_host": "firestore",
        "kube_server": "kube server",
        "gateway_url": "gateway",
        "prometheus_url": "prometheus",
        "tasks_emulator_host": "cloud tasks",
    }
    rows += [(label, exports[key]) for key, label in labels.items() if key in exports]
    rows += [(key, value) for key, value in exports.items() if key not in labels]
    if "gateway_url" in exports:
        rows.append(("routes", f"Host: <service>.<namespace>.{state.domain}"))
    if state.kubeconfig:
        rows.append(("kubeconfig", state.kubeconfig))
    rows.append(("state", str(stack_state.state_path(state.state_dir))))
    return "\n".join(f"  {label:<12} {value}" for label, value in rows)


def _report_failure(exc: stack.StackStartFailed) -> None:
    _err(f"error: {exc.component} failed to start: {exc.reason}")
    log_tail = exc.log_tail()
    if log_tail:
        _err(f"--- last lines of {exc.log_path} ---\n{log_tail}\n---")
    _err("everything that had started was stopped again; nothing is left running.")


class _CtrlC:
    """Ctrl-C (or SIGTERM, SIGHUP) during start-up aborts it; once the stack is up, it asks the
    foreground loop to stop it, so a Ctrl-C right after "up" is an ordinary stop, not an abort."""

    def __init__(self) -> None:
        self.up = False
        self.stop = threading.Event()

    def started(self) -> None:
        """The stack is up: from now on a signal stops it."""
        self.up = True

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.up:
            raise KeyboardInterrupt
        self.stop.set()


@contextmanager
def _signal_handlers(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """Route Ctrl-C, SIGTERM and a closed terminal (SIGHUP) to ``handler``."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def options_from(args: argparse.Namespace) -> stack.StackOptions:
    """StackOptions from the ``up`` arguments."""
    only = frozenset(n.strip() for n in args.only.split(",") if n.strip()) if args.only else None
    faults = None
    if args.faults:
        from local.faults.spec import load_spec

        faults = load_spec(args.faults, seed=args.fault_seed)  # FaultSpecError names the field
    elif args.fault_seed is not None:
        raise stack_state.StackError("--fault-seed needs --faults FILE|all")
    return stack.StackOptions(
        project=args.project,
        domain=args.domain,
        only=only,
        faults=faults,
        tick_seconds=args.tick_seconds,
    )


def _cmd_up(args: argparse.Namespace) -> int:
    from local.faults.spec import FaultSpecError

    try:
        options = options_from(args)
    except (FaultSpecError, stack_state.StackError) as exc:
        _err(f"error: {exc}")
        _err("nothing was started.")
        return 2
    supervisor = None if args.detach else os.getpid()
    ctrl_c = _CtrlC()
    try:
        with _signal_handlers(ctrl_c):
            started = stack.up(
                options, progress=_say, supervisor_pid=supervisor, on_up=ctrl_c.started
            )
            return _after_up(args, started, ctrl_c.stop)
    except stack.StackAlreadyUp as exc:
        _err(f"error: stack already up (started {exc.state.started_at}); nothing changed.")
        _err(describe(exc.state))
        _err('use it with `eval "$(hekaton env)"`, or stop it first with `hekaton down`.')
        return 1
    except MissingComponent as exc:
        _err(f"error: {exc}")
        _err("nothing was started.")
        return 1
    except stack.StackStartFailed as exc:
        _report_failure(exc)
        return 1
    except stack_state.StackError as exc:
        _err(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _err("interrupted during start-up; everything that had started was stopped.")
        return 130


def _after_up(args: argparse.Namespace, started: stack.StartedStack, stop: threading.Event) -> int:
    if args.detach and stop.is_set():
        # Ctrl-C as start-up ended: the person gave up waiting, so leave nothing running.
        started.stop()
        _err("interrupted as start-up ended; the stack was stopped.")
        return 130
    _say(timing_line(started.state))
    _say(describe(started.state))
    if args.detach:
        _say('use it from a shell:  eval "$(hekaton env)"')
        _say("stop it:              hekaton down")
        return 0
    return _run_foreground(started, stop)


def _run_foreground(started: stack.StartedStack, stop: threading.Event) -> int:
    _say("running in the foreground; press Ctrl-C to stop everything")
    dead = stack.supervise(started, stop=stop)
    if dead is None:
        began = time.monotonic()
        started.stop()
        _say(
            f"stopped {', '.join(rc.name for rc in started.running)} in "
            f"{time.monotonic() - began:.1f}s"
        )
        return 0
    if stack.stopped_elsewhere(started):
        started.stop()
        _say("the stack was stopped by `hekaton down`")
        return 0
    _err(f"error: {dead.name} exited unexpectedly (code {dead.process.returncode})")
    log_tail = tail(dead.process.log_path, 20)
    if log_tail:
        _err(f"--- last lines of {dead.process.log_path} ---\n{log_tail}\n---")
    started.stop()
    _err("stopped the rest of the stack.")
    return 1


def _cmd_down(args: argparse.Namespace) -> int:
    try:
        report = stack.down()
    except stack_state.StackBusy as exc:
        _err(f"error: {exc}")
        return 1
    if report.note:
        _say(f"note: {report.note}")
    if not report.found:
        _say("no stack running")
        return 0
    for outcome in report.outcomes:
        if outcome.outcome == "killed":
            _say(f"  {outcome.name}: did not stop on SIGTERM in time, killed")
        elif outcome.outcome == "already gone":
            _say(f"  {outcome.name}: had already exited")
    if report.left_running:
        _err(f"error: could not stop {', '.join(report.left_running)}; see `ps -o pid,pgid,cmd`")
        return 1
    names = ", ".join(o.name for o in report.outcomes)
    _say(f"stopped {names} in {report.seconds:.1f}s")
    return 0


def _running_state() -> stack_state.StackState | None:
    """The live stack, or None after telling the user why there is none."""
    try:
        state = stack_state.load_state()
    except stack_state.StateFileError as exc:
        _err(f"error: {exc}; run `hekaton down`, then `hekaton up --detach`")
        return None
    if state is None:
        _err("error: no stack running; start one with `hekaton up --detach`")
        return None
    if not state.is_up():
        dead = [name for name, alive in state.running().items() if not alive]
        detail = f" ({', '.join(dead)} not running)" if dead else f" (status {state.status})"
        _err(
            f"error: the stack recorded in {stack_state.state_path(state.state_dir)} is not up{detail}; "
            "run `hekaton down`, then `hekaton up --detach`"
        )
        return None
    return state


def env_lines(state: stack_state.StackState) -> list[str]:
    """``export`` lines for a POSIX shell, in a stable order."""
    env = state.client_env()
    ordered = [k for k in ENV_ORDER if k in env] + sorted(k for k in env if k not in ENV_ORDER)
    return [f"export {key}={shlex.quote(env[key])}" for key in ordered]


def _cmd_env(args: argparse.Namespace) -> int:
    state = _running_state()
    if state is None:
        return 1
    print("\n".join(env_lines(state)))
    return 0


def _cmd_ps(args: argparse.Namespace) -> int:
    try:
        state = stack_state.load_state()
    except stack_state.StateFileError as exc:
        _err(f"error: {exc}")
        return 1
    if state is None:
        _say("no stack running")
        return 0
    running = state.running()
    _say(f"stack {state.status}, started {state.started_at}")
    width = max([len("component"), *map(len, state.components)])  # names differ in length
    _say(f"  {'component':<{width}} {'pid':>7}  {'state':<8} {'start-up':>8} {'memory':>8}  url")
    for name, record in state.components.items():
        alive = running[name]
        rss = group_rss_bytes(record.group.pgid) / 2**20 if alive else 0.0
        seconds = f"{record.startup_seconds:.2f}s" if record.startup_seconds is not None else "-"
        _say(
            f"  {name:<{width}} {record.group.pid:>7}  {'running' if alive else 'exited':<8} "
            f"{seconds:>8} {rss:>6.0f}MB  {record.url or '-'}"
        )
    return 0 if state.is_up() else 1


def register(subparsers: Any) -> None:
    """Add ``up``, ``down``, ``env`` and ``ps``."""
    p = subparsers.add_parser(
        "up",
        help="start the local stack (emulators + local cluster + Prometheus); Ctrl-C stops it",
        description="Start the Pub/Sub and Firestore emulators, the local cluster and Prometheus "
        "in parallel, then the functions. "
        "Stays in the foreground until Ctrl-C unless --detach is given.",
    )
    p.add_argument("--detach", action="store_true", help="return once healthy; stop with `down`")
    p.add_argument("--project", default=stack.DEFAULT_PROJECT, help="project id (%(default)s)")
    p.add_argument("--domain", default=stack.DEFAULT_DOMAIN, help="ingress domain (%(default)s)")
    p.add_argument(
        "--only", metavar="NAMES", help="start only these components, e.g. pubsub,firestore"
    )
    p.add_argument(
        "--faults",
        metavar="FILE|all",
        help="inject faults: a fault spec file (see README, Fault injection) or `all`",
    )
    p.add_argument(
        "--fault-seed", type=int, metavar="N", help="seed of the injected faults (the spec's)"
    )
    p.add_argument(
        "--tick-seconds",
        type=_positive_seconds,
        default=TICK_SECONDS,
        help="seconds between safety-net ticks (%(default)s; GCP's Cloud Scheduler: 60); "
        "the Cloud Tasks emulator wakes each wait on time",
    )
    p.set_defaults(func=_cmd_up)
    p = subparsers.add_parser("down", help="stop everything the local stack started")
    p.set_defaults(func=_cmd_down)
    p = subparsers.add_parser(
        "env", help='print export lines for the running stack: eval "$(hekaton env)"'
    )
    p.set_defaults(func=_cmd_env)
    p = subparsers.add_parser("ps", help="the stack's components, their state and memory")
    p.set_defaults(func=_cmd_ps)
