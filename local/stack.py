"""The local stack: every component started in parallel, recorded in ``stack.json``, stopped as one.

A stack is a *plan*: a list of steps run in order. A ``ComponentGroup`` starts its components in
parallel (each in its own process group, logging to ``<state>/logs/<name>.log``) and waits for all
to be healthy; a ``SetupStep`` runs Python against what is already up (create topics, wire push
subscriptions) and may publish values. Later steps see earlier exports and URLs in their
``StackContext``, so dependent processes (functions that need the emulator hosts) come after.

``<state>/stack.json`` (``local.stack_state``) is written as soon as the first process exists
(``status: starting``) and again when everything is healthy (``status: up``), so a crash half-way
still leaves a record that ``down`` can clean up.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from functions.manifest import FUNCTIONS
from local.cluster_component import cluster_component, default_cluster_command
from local.components import (
    Component,
    ComponentFailed,
    MissingComponent,
    RunningComponent,
    StackContext,
    StartCancelled,
    start_component,
)
from local.emulators import FIRESTORE, PUBSUB, emulator_component
from local.faults.components import (
    delivery_proxy_component,
    firestore_outage_component,
    spec_setup,
)
from local.faults.spec import FaultSpec
from local.functions_stack import (
    TICK_SECONDS,
    auth_keys,
    function_components,
    ticker_component,
    wire_subscriptions,
)
from local.kubeconfig import write_kubeconfig
from local.procs import ManagedProcess, StopResult, tail
from local.prometheus_component import NAME as PROMETHEUS
from local.prometheus_component import prometheus_component, write_scrape_targets
from local.stack_state import (
    KUBECONFIG_FILE,
    REPO_ROOT,
    ComponentRecord,
    StackError,
    StackState,
    StateFileError,
    default_state_dir,
    load_state,
    remove_state,
    state_lock,
    write_state,
)
from local.tasks_component import NAME as TASKS
from local.tasks_component import tasks_component

DEFAULT_PROJECT = "hekaton-local"
DEFAULT_DOMAIN = "example.com"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StackOptions:
    """Settings of one stack."""

    project: str = DEFAULT_PROJECT
    domain: str = DEFAULT_DOMAIN
    state_dir: Path = field(default_factory=default_state_dir)
    only: frozenset[str] | None = None  # start just these components (None: all)
    cluster_command: tuple[str, ...] = field(default_factory=default_cluster_command)
    faults: FaultSpec | None = None  # fault injection (local/faults); None: a well-behaved stack
    tick_seconds: float = TICK_SECONDS  # the safety-net tick (timers wake waits on time)


@dataclass(frozen=True)
class SetupStep:
    """In-process work between component groups; returns values to publish in stack.json."""

    name: str
    run: Callable[[StackContext], Mapping[str, str] | None]


@dataclass(frozen=True)
class ComponentGroup:
    """Components started together, in parallel."""

    components: tuple[Component, ...]


PlanStep = ComponentGroup | SetupStep


class StackAlreadyUp(StackError):
    """``up`` found a live stack recorded in the state folder."""

    def __init__(self, state: StackState) -> None:
        self.state = state
        super().__init__(f"stack already up (started {state.started_at})")


class StackStartFailed(StackError):
    """A component failed to start; everything started before it has been stopped."""

    def __init__(self, component: str, reason: str, log_path: Path | None) -> None:
        self.component = component
        self.reason = reason
        self.log_path = log_path
        super().__init__(f"{component} failed to start: {reason}")

    def log_tail(self, lines: int = 20) -> str:
        """The end of the failed component's log ('' if it has none)."""
        return tail(self.log_path, lines) if self.log_path else ""


# --- the default plan ---------------------------------------------------------------------------


def default_plan(options: StackOptions) -> list[PlanStep]:
    """Emulators (Pub/Sub, Firestore, Cloud Tasks), cluster and Prometheus in parallel; Prometheus
    is told the gateway; then every function; then the push wiring and the tick."""
    core = (
        emulator_component(PUBSUB),
        emulator_component(FIRESTORE),
        tasks_component(),
        cluster_component(options.cluster_command),
        prometheus_component(),
    )
    faults = options.faults
    if faults is None:
        return [
            SetupStep("auth keys", auth_keys),
            ComponentGroup(core),
            SetupStep("scrape targets", write_scrape_targets),
            ComponentGroup(function_components()),
            SetupStep("push subscriptions", wire_subscriptions),
            ComponentGroup((ticker_component(),)),
        ]
    # The same plan with the injectors in their places (local/faults/components.py).
    functions = function_components()
    event_functions = [f.name for f in FUNCTIONS if f.trigger_topic]
    return [
        SetupStep("auth keys", auth_keys),
        SetupStep("fault spec", spec_setup(faults)),
        ComponentGroup(core),
        SetupStep("scrape targets", write_scrape_targets),
        *([ComponentGroup((firestore_outage_component(),))] if faults.firestore else []),
        ComponentGroup(functions),
        *(
            [ComponentGroup((delivery_proxy_component(event_functions),))]
            if faults.delivery
            else []
        ),
        SetupStep("push subscriptions", wire_subscriptions),
        ComponentGroup((ticker_component(options.tick_seconds),)),
    ]


def select(plan: Sequence[PlanStep], only: frozenset[str] | None) -> list[PlanStep]:
    """The plan restricted to the named components (setup steps are kept)."""
    if only is None:
        return list(plan)
    known = {c.name for step in plan if isinstance(step, ComponentGroup) for c in step.components}
    unknown = sorted(only - known)
    if unknown:
        raise StackError(
            f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
        )
    selected: list[PlanStep] = []
    for step in plan:
        if isinstance(step, SetupStep):
            selected.append(step)
            continue
        kept = tuple(c for c in step.components if c.name in only)
        if kept:
            selected.append(ComponentGroup(kept))
    return selected


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore Ctrl-C/SIGTERM while cleaning up, so a second Ctrl-C cannot leave orphans."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- starting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StopOutcome:
    """What happened to one component on stop."""

    name: str
    outcome: str  # "stopped", "killed", "already gone" or "still running"


# The functions and the ticker call these. Stopped in the same wave, a request still in flight hangs
# on a vanished emulator, so its function ignores SIGTERM until it is killed: they go last.
_SHARED_SERVICES = frozenset(
    {PUBSUB.name, FIRESTORE.name, TASKS, "cluster", PROMETHEUS, "firestore-proxy"}
)


def _stop_in_parallel(jobs: Mapping[str, Callable[[], StopResult]]) -> list[StopOutcome]:
    """Stop every job in parallel, the shared services in a second wave; outcomes in `jobs` order."""
    dependents = {name: job for name, job in jobs.items() if name not in _SHARED_SERVICES}
    services = {name: job for name, job in jobs.items() if name in _SHARED_SERVICES}
    outcomes = {o.name: o for o in _stop_wave(dependents) + _stop_wave(services)}
    return [outcomes[name] for name in jobs]


def _stop_wave(jobs: Mapping[str, Callable[[], StopResult]]) -> list[StopOutcome]:
    def describe(result: StopResult) -> str:
        if not result.was_running:
            return "already gone"
        if not result.gone:
            return "still running"
        return "stopped" if result.clean else "killed"

    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="stop") as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
    return [StopOutcome(name, describe(future.result())) for name, future in futures.items()]


@dataclass
class StartedStack:
    """A stack this process started: its state and the in-process handles of its processes."""

    state: StackState
    running: list[RunningComponent]

    def stop(self) -> list[StopOutcome]:
        """Stop every component and forget the stack (if stack.json is still ours)."""
        with _signals_deferred():
            outcomes = _stop_in_parallel(
                {
                    rc.name: functools.partial(
                        rc.process.stop, term_timeout=self._stop_timeout(rc.name)
                    )
                    for rc in self.running
                }
            )
            remove_state(self.state.state_dir, self.state.run_id)
        return outcomes

    def _stop_timeout(self, name: str) -> float:
        record = self.state.components.get(name)
        return record.stop_timeout if record else 5.0

    def dead_component(self) -> RunningComponent | None:
        """The first component whose process has exited, if any."""
        return next((rc for rc in self.running if not rc.process.alive()), None)


class _PlanRun:
    """Runs a plan once; on any failure stops everything it started."""

    def __init__(
        self,
        options: StackOptions,
        run_id: str,
        started_at: str,
        progress: Progress | None,
        supervisor_pid: int | None,
    ) -> None:
        self.options = options
        self.run_id = run_id
        self.started_at = started_at
        self.progress = progress
        self.supervisor_pid = supervisor_pid
        self.logs = options.state_dir / "logs"
        self.ctx = StackContext(
            project=options.project,
            domain=options.domain,
            state_dir=options.state_dir,
            repo_root=REPO_ROOT,
        )
        self.lock = threading.Lock()
        self.spawned: dict[str, ManagedProcess] = {}  # latest process per component
        self.order: list[str] = []  # component names in plan order, for stable listings
        self.stop_timeouts: dict[str, float] = {}
        self.running: list[RunningComponent] = []
        self.timings: dict[str, float] = {}

    def say(self, message: str) -> None:
        if self.progress is not None:
            with self.lock:
                self.progress(message)

    def state(self, status: str) -> StackState:
        ready = {rc.name: rc for rc in self.running}
        components = {}
        for name in (n for n in self.order if n in self.spawned):
            process = self.spawned[name]
            rc = ready.get(name)
            components[name] = ComponentRecord(
                name=name,
                group=process.record(),
                log=str(process.log_path),
                url=rc.ready.url if rc else None,
                startup_seconds=round(rc.startup_seconds, 3) if rc else None,
                stop_timeout=self.stop_timeouts.get(name, 5.0),
            )
        return StackState(
            run_id=self.run_id,
            status=status,
            project=self.options.project,
            domain=self.options.domain,
            started_at=self.started_at,
            state_dir=self.options.state_dir,
            components=components,
            exports=dict(self.ctx.exports),
            startup_seconds={k: round(v, 3) for k, v in self.timings.items()},
            supervisor_pid=self.supervisor_pid,
        )

    def on_spawn(self, component: Component, process: ManagedProcess) -> None:
        with self.lock:
            self.spawned[component.name] = process
            self.stop_timeouts[component.name] = component.stop_timeout
            write_state(self.state("starting"))

    def execute(self, plan: Sequence[PlanStep]) -> None:
        try:
            for step in plan:
                if isinstance(step, SetupStep):
                    self._setup(step)
                else:
                    self._start_group(step.components)
        except BaseException:
            with _signals_deferred():
                self.stop_all()
            raise

    def stop_all(self) -> list[StopOutcome]:
        with self.lock:
            jobs = {
                name: functools.partial(
                    process.stop, term_timeout=self.stop_timeouts.get(name, 5.0)
                )
                for name, process in self.spawned.items()
            }
        return _stop_in_parallel(jobs)

    def _publish(self, exports: Mapping[str, str], urls: Mapping[str, str]) -> None:
        self.ctx = replace(
            self.ctx,
            exports={**self.ctx.exports, **exports},
            urls={**self.ctx.urls, **urls},
        )

    def _setup(self, step: SetupStep) -> None:
        started = time.monotonic()
        try:
            published = step.run(self.ctx) or {}
        except Exception as exc:
            raise StackStartFailed(f"setup step {step.name!r}", repr(exc), None) from exc
        seconds = time.monotonic() - started
        self.timings[f"setup:{step.name}"] = seconds
        self._publish(published, {})
        self.say(f"  {step.name:<12} done in {seconds:.2f}s")

    def _start_one(self, component: Component, cancel: threading.Event) -> RunningComponent:
        running = start_component(
            component,
            self.ctx,
            self.logs / f"{component.name}.log",
            cancel=cancel,
            on_spawn=lambda process: self.on_spawn(component, process),
        )
        self.say(
            f"  {component.name:<12} ready in {running.startup_seconds:.2f}s  {running.ready.url}"
        )
        return running

    def _start_group(self, components: Sequence[Component]) -> None:
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=len(components), thread_name_prefix="start")
        futures: dict[Future[RunningComponent], Component] = {}
        self.order += [c.name for c in components]
        try:
            for component in components:
                futures[pool.submit(self._start_one, component, cancel)] = component
            wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.done() and f.exception() is not None for f in futures):
                cancel.set()
            wait(futures)
        except BaseException:
            cancel.set()
            raise
        finally:
            with _signals_deferred():
                pool.shutdown(wait=True)
        failure = _first_failure(futures)
        if failure is not None:
            raise failure
        for future, component in futures.items():
            running = future.result()
            self.running.append(running)
            self.timings[component.name] = running.startup_seconds
            self._publish(running.ready.exports, {component.name: running.ready.url})


def _first_failure(
    futures: Mapping[Future[RunningComponent], Component],
) -> StackStartFailed | None:
    """The real cause among failed start-ups (a cancelled sibling is only a consequence)."""
    failures: list[StackStartFailed] = []
    for future, component in futures.items():
        exc = future.exception()
        if exc is None or isinstance(exc, StartCancelled):
            continue
        if isinstance(exc, ComponentFailed):
            failures.append(StackStartFailed(exc.name, exc.reason, exc.log_path))
        elif isinstance(exc, MissingComponent):
            failures.append(StackStartFailed(component.name, str(exc), None))
        else:
            failures.append(
                StackStartFailed(component.name, f"health check crashed: {exc!r}", None)
            )
    return failures[0] if failures else None


def _clear_previous(state_dir: Path, progress: Progress | None) -> None:
    """Refuse if a live stack is recorded; stop and forget a stale or half-started one."""
    try:
        previous = load_state(state_dir)
    except StateFileError as exc:
        if progress:
            progress(f"note: {exc}; replacing it")
        remove_state(state_dir)
        return
    if previous is None:
        return
    if previous.is_up():
        raise StackAlreadyUp(previous)
    leftovers = [name for name, alive in previous.running().items() if alive]
    if progress:
        detail = f"; stopping its leftovers: {', '.join(leftovers)}" if leftovers else ""
        progress(f"note: replacing a stale stack record from {previous.started_at}{detail}")
    _stop_recorded(previous)
    remove_state(state_dir)


def _preflight(plan: Sequence[PlanStep]) -> None:
    for step in plan:
        if isinstance(step, ComponentGroup):
            for component in step.components:
                if component.check is not None:
                    component.check()


def up(
    options: StackOptions | None = None,
    *,
    plan: Sequence[PlanStep] | None = None,
    progress: Progress | None = None,
    supervisor_pid: int | None = None,
    on_up: Callable[[], None] | None = None,
) -> StartedStack:
    """Start the stack and return once every component is healthy.

    `on_up` runs once every component is healthy, just before the record says "up": from then on
    the caller treats a Ctrl-C as stopping a stack that is up, not as aborting its start-up.
    Raises StackAlreadyUp (nothing changed), MissingComponent (nothing started) or
    StackStartFailed (everything already started has been stopped again).
    """
    options = options or StackOptions()
    steps = select(plan if plan is not None else default_plan(options), options.only)
    with state_lock(options.state_dir):
        _clear_previous(options.state_dir, progress)
        _preflight(steps)
        return _start(options, steps, progress, supervisor_pid, on_up)


def _start(
    options: StackOptions,
    steps: Sequence[PlanStep],
    progress: Progress | None,
    supervisor_pid: int | None,
    on_up: Callable[[], None] | None = None,
) -> StartedStack:
    started = time.monotonic()
    run = _PlanRun(
        options,
        run_id=uuid.uuid4().hex,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        progress=progress,
        supervisor_pid=supervisor_pid,
    )
    names = [c.name for s in steps if isinstance(s, ComponentGroup) for c in s.components]
    run.say(f"starting {', '.join(names)} (logs in {run.logs})")
    try:
        run.execute(steps)
        run.timings["total"] = time.monotonic() - started
        state = run.state("up")
        if "kube_server" in state.exports:
            kubeconfig = write_kubeconfig(
                options.state_dir / KUBECONFIG_FILE, state.exports["kube_server"]
            )
            state = replace(state, kubeconfig=str(kubeconfig))
        if on_up is not None:
            # Before the record says "up": whoever reads it and sends Ctrl-C reaches a caller
            # that stops a stack which is up, not one that aborts a start-up (and exits 130).
            on_up()
        write_state(state)
    except BaseException:
        with _signals_deferred():
            run.stop_all()
            remove_state(options.state_dir, run.run_id)
        raise
    return StartedStack(state=state, running=run.running)


def ensure_up(
    options: StackOptions | None = None, *, progress: Progress | None = print
) -> StackState:
    """The running stack, started (detached) first if none is up."""
    options = options or StackOptions()
    try:
        current = load_state(options.state_dir)
    except StateFileError:
        current = None
    if current is not None and current.is_up():
        return current
    try:
        return up(options, progress=progress).state
    except StackAlreadyUp as raced:  # another process brought it up meanwhile
        return raced.state


# --- stopping -----------------------------------------------------------------------------------


def _stop_recorded(state: StackState) -> list[StopOutcome]:
    return _stop_in_parallel(
        {
            name: functools.partial(rec.group.stop, term_timeout=rec.stop_timeout)
            for name, rec in state.components.items()
        }
    )


@dataclass(frozen=True)
class DownReport:
    """What ``down`` did."""

    found: bool
    outcomes: list[StopOutcome] = field(default_factory=list)
    seconds: float = 0.0
    note: str | None = None

    @property
    def left_running(self) -> list[str]:
        """Components that could not be stopped."""
        return [o.name for o in self.outcomes if o.outcome == "still running"]


def down(state_dir: Path | None = None) -> DownReport:
    """Stop every recorded component group (only groups provably ours) and remove stack.json."""
    state_dir = state_dir or default_state_dir()
    started = time.monotonic()
    with state_lock(state_dir):
        try:
            state = load_state(state_dir)
        except StateFileError as exc:
            remove_state(state_dir)
            return DownReport(found=False, note=f"{exc}; removed it")
        if state is None:
            return DownReport(found=False)
        # Tell a foreground `hekaton up` that the exits it is about to see are intended.
        write_state(replace(state, status="stopping"))
        with _signals_deferred():
            outcomes = _stop_recorded(state)
            remove_state(state_dir)
    return DownReport(found=True, outcomes=outcomes, seconds=time.monotonic() - started)


def stop_stack(state_dir: Path | None = None) -> DownReport:
    """Alias of ``down`` for library callers (demo, benchmarks)."""
    return down(state_dir)


def supervise(
    started: StartedStack, *, stop: threading.Event, poll_seconds: float = 0.25
) -> RunningComponent | None:
    """Block until ``stop`` is set (returns None) or a component exits (returns it)."""
    while not stop.wait(poll_seconds):
        dead = started.dead_component()
        if dead is not None:
            return dead
    return None


def stopped_elsewhere(started: StartedStack) -> bool:
    """True if ``hekaton down`` (or a newer stack) took over this stack's record."""
    try:
        current = load_state(started.state.state_dir)
    except StateFileError:
        return False
    return current is None or current.run_id != started.state.run_id or current.status == "stopping"
